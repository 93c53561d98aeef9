"""deploy/dagster.yaml gives a working instance on the real PostgreSQL of this machine."""

import os
import shutil
import subprocess
import sys
import uuid

import pytest
import sqlalchemy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADMIN_URL = os.environ.get(
    "DS_ASSETS_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def database():
    """A fresh database on the local server, dropped afterwards."""
    name = f"dagster_{uuid.uuid4().hex[:10]}"
    try:
        engine = sqlalchemy.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    except sqlalchemy.exc.OperationalError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL at {ADMIN_URL} is not reachable: {error}")
    yield name
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    engine.dispose()


def test_demo_runs_on_the_postgres_instance(tmp_path, database):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(os.path.join(ROOT, "deploy", "dagster.yaml"), home / "dagster.yaml")
    url = sqlalchemy.engine.make_url(ADMIN_URL)
    env = dict(
        os.environ,
        DAGSTER_HOME=str(home),
        DS_ASSETS_DATA=str(tmp_path / "data"),
        DAGSTER_PG_HOST=url.host or "127.0.0.1",
        DAGSTER_PG_PORT=str(url.port or 5432),
        DAGSTER_PG_USER=url.username or "postgres",
        DAGSTER_PG_PASSWORD=url.password or "",
        DAGSTER_PG_DB=database,
    )
    out = subprocess.run(
        [sys.executable, "definitions.py"], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    engine = sqlalchemy.create_engine(url.set(database=database))
    with engine.connect() as connection:
        keys = connection.execute(sqlalchemy.text("SELECT asset_key FROM asset_keys")).scalars()
        stored = set(keys)
    engine.dispose()
    assert '["penguins_features"]' in stored and '["penguins", "train"]' in stored
