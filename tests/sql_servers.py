"""The SQL servers the tests read from: PostgreSQL and MariaDB on 127.0.0.1 (their URLs can be
overridden by environment variables). The fixtures `postgresql`, `mariadb` and `sqlite` (in
conftest.py) give an engine on each."""

import os

import pytest
import sqlalchemy as sa

URLS = {
    "postgresql": os.environ.get(
        "DS_ASSETS_TEST_POSTGRESQL_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get(
        "DS_ASSETS_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
    ),
}


def server_engine(name: str, **options) -> sa.Engine:
    """An engine on the named server; the test fails under CI (and skips elsewhere) if the
    server cannot be reached."""
    engine = sa.create_engine(URLS[name], **options)
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as error:
        engine.dispose()
        reason = f"{name} at {engine.url.render_as_string(hide_password=True)} unreachable"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: {error.orig}")
        pytest.skip(f"{reason}: {error.orig}")
    return engine
