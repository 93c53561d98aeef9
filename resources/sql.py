"""`SQLResource`: a SQLAlchemy engine from configuration, the password kept out of sight."""

from typing import Any

import sqlalchemy
from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr
from sqlalchemy.engine import URL, Engine, make_url

from ds_assets.formats.sql import safe_url, secret_query_keys


class SQLResource(ConfigurableResource):
    """A database for `sql_source` and `new_rows_sensor`.

    `url` is a SQLAlchemy URL without the password; give the password with `EnvVar`, so it is
    read from the environment in the process that connects and never shown in the UI, logs or
    metadata (the engine's URL renders it as `***`).

    >>> from dagster import EnvVar
    >>> resource = SQLResource(url="sqlite:///:memory:")
    >>> resource.get_engine().dialect.name
    'sqlite'
    >>> SQLResource(url="postgresql+psycopg2://reader@db/shop", password=EnvVar("DB_PASSWORD"))
    ... # doctest: +ELLIPSIS
    SQLResource(url='postgresql+psycopg2://reader@db/shop', ...)
    """

    url: str = Field(description="SQLAlchemy database URL, without the password.")
    password: str | None = Field(
        default=None, description="The password; set it with EnvVar('NAME')."
    )
    connect_args: dict[str, Any] = Field(
        default_factory=dict, description="Extra arguments for the DBAPI connect call."
    )
    _engine: Engine | None = PrivateAttr(default=None)

    def database_url(self) -> URL:
        url = make_url(self.url)
        if url.password is not None:
            raise ValueError(
                f"SQLResource url {url.render_as_string(hide_password=True)} holds a password; "
                "give it as password=EnvVar('NAME') instead, so it is never shown"
            )
        secrets = secret_query_keys(url)
        if secrets:
            shown = safe_url(url)
            raise ValueError(
                f"SQLResource url {shown} holds {', '.join(secrets)} in its query string; give "
                "the password as password=EnvVar('NAME') (other secrets in connect_args, each "
                "from an EnvVar), so it is never shown"
            )
        return url.set(password=self.password) if self.password else url

    def get_engine(self) -> Engine:
        """One engine per resource instance (its connection pool is reused)."""
        if self._engine is None:
            self._engine = sqlalchemy.create_engine(
                self.database_url(), connect_args=dict(self.connect_args), pool_pre_ping=True
            )
        return self._engine

    def safe_url(self) -> str:
        """The URL as it may be shown: the password replaced by `***`."""
        return safe_url(self.database_url())
