"""Drives a sensor tick by tick against a real DagsterInstance, the way the daemon does:
evaluate with the stored cursor, apply the dynamic partition requests, store the new cursor."""

from dagster import DagsterInstance, Definitions, SensorDefinition, build_sensor_context


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

    def tick(self, cursor: str | None = None) -> list[str]:
        """Evaluate once (from `cursor` if given, else the stored one); the partition keys
        requested at this tick."""
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
        if data.cursor is not None:
            self.cursor = data.cursor
        self.requested += keys
        return keys
