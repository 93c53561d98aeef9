import os
import uuid

import pytest
import sqlalchemy as sa

os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

from tests.servers import start_seaweedfs  # noqa: E402
from tests.sql_servers import server_engine  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own ds-assets cache (views, S3 downloads)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DS_ASSETS_CACHE", str(cache))
    return cache


@pytest.fixture
def instance(tmp_path):
    """A real Dagster instance on disk (runs, events, dynamic partitions), one per test."""
    from dagster import DagsterInstance

    home = tmp_path / "dagster_home"
    home.mkdir()
    with DagsterInstance.local_temp(str(home)) as dagster_instance:
        yield dagster_instance


@pytest.fixture
def env(instance, tmp_path):
    """(Dagster instance, a local DatasetIOManager, its data folder) for asset tests."""
    from resources import DatasetIOManager

    data = tmp_path / "data"
    return instance, DatasetIOManager(base_dir=str(data)), data


@pytest.fixture(scope="session")
def seaweedfs():
    """One real S3 server (SeaweedFS) for the whole test session."""
    try:
        server = start_seaweedfs()
    except RuntimeError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"cannot start SeaweedFS: {error}")
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(seaweedfs):
    name = f"test-{uuid.uuid4().hex[:12]}"
    seaweedfs.client().create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """The same tests against both backends."""
    from ds_assets.storage import LocalStore
    from ds_assets.storage.s3 import S3Store

    if request.param == "local":
        return LocalStore(str(tmp_path / "store"))
    server = request.getfixturevalue("seaweedfs")
    bucket = request.getfixturevalue("s3_bucket")
    return S3Store(server.client(), bucket, "prefix/ds")


@pytest.fixture(scope="module")
def postgresql():
    """An engine on the PostgreSQL server (the test fails under CI, skips elsewhere, if down)."""
    engine = server_engine("postgresql")
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def mariadb():
    """An engine on the MariaDB server (the test fails under CI, skips elsewhere, if down)."""
    engine = server_engine("mariadb")
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite(tmp_path):
    """An engine on a fresh SQLite file."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'test.db'}")
    yield engine
    engine.dispose()


@pytest.fixture(params=["compiled", "python"])
def xml_tree_walker(request, monkeypatch):
    """The XML tree path's row conversion: compiled (`ds_assets/formats/_xmltree.pyx`, which
    must be built: `make install` builds it) or the Python code it stands for."""
    from ds_assets.formats import xml

    if request.param == "compiled":
        assert xml._WALKER is not None, "ds_assets.formats._xmltree is not built, or refused"
    else:
        monkeypatch.setattr(xml, "_WALKER", None)
        monkeypatch.setattr(xml, "_ATTRIBUTE_PATH", True)
        monkeypatch.setenv("DS_ASSETS_XML_COMPILED", "0")  # for the tests' fresh processes
    return request.param
