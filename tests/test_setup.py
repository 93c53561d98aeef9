"""The project set-up: every Dagster integration imports, versions move together, demo runs."""

import importlib
import importlib.metadata
import os
import subprocess
import sys

import datasets
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
    "module",
    ["dagster", "dagster_webserver", "dagster_aws.s3", "dagster_postgres", "dagster_k8s"],
)
def test_dagster_integrations_import(module):
    importlib.import_module(module)


def test_dagster_family_versions_match():
    core = importlib.metadata.version("dagster").split(".")
    assert importlib.metadata.version("dagster-webserver") == ".".join(core)
    for library in ("dagster-aws", "dagster-postgres", "dagster-k8s"):
        major, minor, patch = importlib.metadata.version(library).split(".")
        assert (major, int(minor) - 16, patch) == ("0", int(core[1]), core[2]), library


def test_data_layer_does_not_import_dagster():
    code = (  # every module of the data layer, present and future
        "import importlib, pkgutil, sys\n"
        "for package in ('storage', 'ops', 'formats', 'index'):\n"
        "    try:\n"
        "        root = importlib.import_module('ds_assets.' + package)\n"
        "    except ModuleNotFoundError:\n"
        "        continue\n"
        "    for module in pkgutil.walk_packages(root.__path__, root.__name__ + '.'):\n"
        "        importlib.import_module(module.name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'resources')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_store_silences_progress_bars_only_inside_its_calls(tmp_path):
    code = (
        "import datasets, sys; from ds_assets.storage import LocalStore; "
        "store = LocalStore(sys.argv[1]); "
        "store.save(('x',), datasets.Dataset.from_dict({'a': list(range(100))})); "
        "store.load(('x',)); print(datasets.are_progress_bars_disabled())"
    )
    env = {k: v for k, v in os.environ.items() if k != "HF_DATASETS_DISABLE_PROGRESS_BARS"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"  # the user's setting is restored
    assert "Saving the dataset" not in out.stderr and "Loading" not in out.stderr


def test_demo_pipeline_materializes(tmp_path):
    env = dict(os.environ, DS_ASSETS_DATA=str(tmp_path / "data"), DAGSTER_HOME=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "definitions.py"], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "penguins_features" in out.stdout
    features = datasets.load_from_disk(str(tmp_path / "data" / "penguins_features"))
    assert set(features) == {"train", "test"}
    assert len(features["train"][0]["features"]) == 4
    splits = datasets.load_from_disk(str(tmp_path / "data" / "penguins"))
    assert len(splits["train"]) + len(splits["test"]) == 344
    assert "passed" in out.stdout and "FAILED" not in out.stdout  # the demo's checks
    from ds_assets.storage import LocalStore

    store = LocalStore(str(tmp_path / "data"))
    augmented = store.load(("penguins_augmented",))["train"]
    assert augmented[:3]["features"] != augmented[:3]["features"]  # fresh noise per access
    dream = store.load(("penguins_dream",))
    biscoe = store.load(("penguins_biscoe",))
    mixed = datasets.interleave_datasets(
        [dream, biscoe], probabilities=[0.6, 0.4], seed=0, stopping_strategy="all_exhausted"
    )
    assert store.load(("penguins_mixed",))[:] == mixed[:]
    # the field station: an XML file and SQL rows picked up as partitions, then indexed
    observations = store.load(("penguin_observations", "2026-11-24.xml"))
    assert len(observations) == 40 and observations.features["species"].names[0] == "Adelie"
    notes = [store.load(("field_notes", key)) for key in ("start..20", "20..40", "40..50")]
    assert [len(part) for part in notes] == [20, 20, 10]
    from ds_assets.index.stored import open_stored

    for name in ("field_notes_text", "field_notes_faiss"):
        manifest, folder, dataset = store.load_bundle((name,))
        index = open_stored(manifest.index, folder, dataset)
        rows = index.nearest_examples("krill", k=1)[1]
        assert "diving for krill" in rows["note"][0], name


def test_definitions_load_as_a_code_location():
    sys.path.insert(0, ROOT)
    try:
        definitions = importlib.import_module("definitions")
    finally:
        sys.path.remove(ROOT)
    keys = {key.to_user_string() for key in definitions.defs.resolve_all_asset_keys()}
    assert {"penguins_raw", "penguins/train", "penguins/test", "penguins_features"} <= keys
