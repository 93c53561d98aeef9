"""Drives a sensor tick by tick against a real DagsterInstance, the way the daemon does:
evaluate with the stored cursor, apply the dynamic partition requests, skip run requests whose
run key this sensor launched before, store the new cursor."""

from dagster import DagsterInstance, Definitions, SensorDefinition, build_sensor_context

# (instance folder, sensor name) -> run keys launched: what the daemon finds in the instance's
# runs (tagged with the sensor's name and the run key) and skips requests for. Held here, since
# these tests launch no runs; shared by drivers of one instance, as a restarted daemon would be.
_LAUNCHED: dict[tuple[str, str], set[str]] = {}


class SensorDriver:
    def __init__(self, sensor: SensorDefinition, instance: DagsterInstance, assets, resources=None):
        self.sensor = sensor
        self.instance = instance
        self.resources = resources or {}
        self.definitions = Definitions(
            assets=list(assets), sensors=[sensor], resources=self.resources
        )
        self.cursor: str | None = None
        self.requested: list[str] = []

    def tick(self, cursor: str | None = None, stop_after_partitions: bool = False) -> list[str]:
        """Evaluate once (from `cursor` if given, else the stored one); the partition keys
        whose runs this tick launches (requests for run keys launched before are skipped).
        `stop_after_partitions`: the daemon stops once it has added the partitions, before it
        records the run requests and the cursor."""
        context = build_sensor_context(
            instance=self.instance,
            instance_ref=self.instance.get_ref(),  # lets Dagster see the partitions requested
            cursor=self.cursor if cursor is None else cursor,
            resources=self.resources,
            definitions=self.definitions,
        )
        data = self.sensor.evaluate_tick(context)
        for request in data.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
        keys = [run.partition_key for run in data.run_requests or []]
        assert [run.run_key for run in data.run_requests or []] == keys
        if stop_after_partitions:
            return []
        if data.cursor is not None:
            self.cursor = data.cursor
        launched = _LAUNCHED.setdefault((self.instance.root_directory, self.sensor.name), set())
        keys = [key for key in keys if key not in launched]
        launched.update(keys)
        self.requested += keys
        return keys
