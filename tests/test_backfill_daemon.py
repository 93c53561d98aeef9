"""A backfill of every partition of a file source, run by Dagster's own backfill daemon
iteration against a real instance: one run for all partitions (`BackfillPolicy.single_run()`),
and a downstream unpartitioned asset then sees every partition's rows."""

import importlib
import json
import logging
import os
import time

from dagster import AssetKey, materialize
from dagster._core.execution.backfill import PartitionBackfill
from dagster._core.test_utils import create_test_daemon_workspace_context, instance_for_test
from dagster._core.workspace.load_target import PythonFileTarget
from dagster._daemon.backfill import execute_backfill_iteration

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_materialize_all_partitions_is_one_run_and_downstream_sees_them_all(tmp_path, monkeypatch):
    monkeypatch.setenv("DS_ASSETS_BACKFILL_DIR", str(tmp_path))
    (tmp_path / "in").mkdir()
    names = [f"{number}.json" for number in range(4)]
    for number, name in enumerate(names):
        (tmp_path / "in" / name).write_text(json.dumps({"id": number}) + "\n")
    target = PythonFileTarget(
        python_file=os.path.join(ROOT, "tests", "backfill_definitions.py"),
        attribute="defs", working_directory=ROOT, location_name="backfill",
    )  # fmt: skip
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("events__files", names)
        with create_test_daemon_workspace_context(target, instance) as workspace:
            backfill = PartitionBackfill.from_asset_partitions(
                backfill_id="all-files", asset_graph=workspace.create_request_context().asset_graph,
                backfill_timestamp=time.time(), tags={}, asset_selection=[AssetKey("events")],
                partition_names=None, dynamic_partitions_store=instance, all_partitions=True,
                title=None, description=None, run_config=None,
            )  # fmt: skip
            instance.add_backfill(backfill)
            for _ in range(3):
                list(execute_backfill_iteration(workspace, logging.getLogger("backfill")))
        runs = instance.get_runs()
        assert len(runs) == 1
        tags = runs[0].tags
        assert (tags["dagster/asset_partition_range_start"],
                tags["dagster/asset_partition_range_end"]) == ("0.json", "3.json")  # fmt: skip
        # the run is queued (no run launcher here): execute what it asks for, its range tags
        definitions = importlib.reload(importlib.import_module("tests.backfill_definitions"))
        defs, events, every_event = definitions.defs, definitions.events, definitions.every_event
        resources = {"io_manager": defs.resources["io_manager"]}
        partitions = ",".join(names)
        range_tags = {key: value for key, value in tags.items() if "partition_range" in key}
        assert materialize([events], resources=resources, instance=instance,
                           tags=range_tags).success  # fmt: skip
        result = materialize([events, every_event], resources=resources, instance=instance,
                             selection=[every_event])  # fmt: skip
        assert sorted(result.output_for_node("every_event")["id"]) == [0, 1, 2, 3], partitions
