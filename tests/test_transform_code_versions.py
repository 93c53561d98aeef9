"""Code versions of map/filter functions: the same in every process for the same function
(callable objects, functools.partial), different when only a constant differs."""

import functools
import json
import os
import subprocess
import sys
import textwrap

from dagster import AssetKey, asset, materialize
from datasets import Dataset

from ds_assets import map_asset
from tests.transforms_for_tests import Scale, scaled

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# materializes map assets of a partial and of a callable object, prints their code versions
SCRIPT = textwrap.dedent(
    """
    import functools, json, os, sys
    from dagster import DagsterInstance, asset, materialize
    from datasets import Dataset
    from ds_assets import map_asset
    from resources import DatasetIOManager
    from tests.transforms_for_tests import Scale, scaled

    factor = int(sys.argv[1])

    @asset
    def numbers() -> Dataset:
        return Dataset.from_dict({"n": [1, 2, 3]})

    assets = [
        map_asset("by_partial", numbers, functools.partial(scaled, factor=factor)),
        map_asset("by_object", numbers, Scale(factor)),
    ]
    with DagsterInstance.local_temp(os.environ["DAGSTER_HOME"]) as instance:
        io_manager = DatasetIOManager(base_dir=os.environ["DATA"])
        result = materialize([numbers, *assets], instance=instance,
                             resources={"io_manager": io_manager})
        assert result.success
        versions = {}
        for definition in assets:
            event = instance.get_latest_materialization_event(definition.key)
            tags = event.asset_materialization.tags
            versions[definition.key.to_user_string()] = tags["dagster/code_version"]
    print(json.dumps(versions))
    """
)


def versions_in_a_new_process(tmp_path, factor: int) -> dict:
    home = tmp_path / f"home-{os.urandom(4).hex()}"
    home.mkdir()
    env = dict(os.environ, DAGSTER_HOME=str(home), DATA=str(home / "data"), PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(factor)], capture_output=True,
                         text=True, env=env, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_partials_and_callable_objects_have_one_code_version_in_every_process(tmp_path):
    first, again = versions_in_a_new_process(tmp_path, 2), versions_in_a_new_process(tmp_path, 2)
    assert first == again
    other = versions_in_a_new_process(tmp_path, 3)
    assert all(other[name] != first[name] for name in first), (first, other)


def exec_lambda(text: str):
    namespace: dict = {}
    exec(f"function = {text}", namespace)
    return namespace["function"]


def test_exec_lambdas_that_differ_only_in_a_constant_get_their_own_version(env):
    double = map_asset("double", "numbers", exec_lambda("lambda row: {'m': row['n'] * 2}"))
    triple = map_asset("triple", "numbers", exec_lambda("lambda row: {'m': row['n'] * 3}"))
    instance, io_manager, _ = env

    @asset
    def numbers() -> Dataset:
        return Dataset.from_dict({"n": [1, 2, 3]})

    result = materialize([numbers, double, triple], instance=instance,
                         resources={"io_manager": io_manager})  # fmt: skip
    assert result.success
    recorded = {
        name: instance.get_latest_materialization_event(AssetKey(name)).asset_materialization.tags[
            "dagster/code_version"
        ]
        for name in ("double", "triple")
    }
    assert recorded["double"] != recorded["triple"]
    again = map_asset("double", "numbers", exec_lambda("lambda row: {'m': row['n'] * 2}"))
    assert again.code_versions_by_key[again.key] == recorded["double"]


def test_closures_and_defaults_that_differ_give_other_versions():
    def make(factor):
        return lambda row: {"m": row["n"] * factor}

    versions = {
        map_asset("m", "numbers", function).code_versions_by_key[AssetKey("m")]
        for function in (
            make(2),
            make(3),
            functools.partial(scaled, factor=2),
            functools.partial(scaled, factor=3),
            Scale(2),
            Scale(3),
        )  # fmt: skip
    }
    assert len(versions) == 6


def test_a_set_constant_gives_one_version_whatever_the_hash_seed():
    script = (
        "from ds_assets.assets.common import code_version\n"
        "namespace = {}\n"
        'exec(\'f = lambda row: row["t"] in {"alpha", "beta", "gamma", "delta"}\', '
        "namespace)\n"
        "print(code_version('filter', {}, namespace['f']))\n"
    )
    versions = set()
    for seed in ("1", "2", "3", "4"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=ROOT)
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             env=env, cwd=ROOT)  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
        versions.add(out.stdout.strip())
    assert len(versions) == 1
