"""`QdrantResource`: a Qdrant client from configuration, a server or the embedded local mode.

The index work itself is `ds_assets.index.qdrant` (no Dagster there); this resource only holds
the configuration and hands out the client.
"""

from __future__ import annotations

from dagster import ConfigurableResource, InitResourceContext
from pydantic import ConfigDict, Field, PrivateAttr, field_validator
from qdrant_client import QdrantClient

from ds_assets.index.qdrant import local_client


class QdrantResource(ConfigurableResource):
    """A Qdrant server when `url` is set, otherwise Qdrant's embedded local mode in the folder
    `path` (the default of the demo: no server to run).

    Give `api_key` with `EnvVar("NAME")`: it is read from the environment in the process that
    connects and never shown in the UI, logs or metadata. It is ignored in local mode.

    Local mode locks its folder: only one client per folder and process can open it, so
    `get_client()` hands out one cached client per folder (all resources and threads of the
    process share it), and two processes cannot use one folder at once (use a server for that).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     client = QdrantResource(path=folder).get_client()
    ...     print(client is QdrantResource(path=folder).get_client())
    ...     client.close()
    True
    >>> from dagster import EnvVar
    >>> QdrantResource(url="https://qdrant.example:6333", api_key=EnvVar("QDRANT_API_KEY"))
    ... # doctest: +ELLIPSIS
    QdrantResource(url='https://qdrant.example:6333', ...)
    """

    url: str | None = Field(
        default=None,
        description="Qdrant server URL (http(s)://host:6333, no user:password: use api_key); "
        "none for the embedded local mode.",
    )
    api_key: str | None = Field(
        default=None, description="API key of the server; set it with EnvVar('NAME')."
    )
    path: str = Field(
        default="./data/qdrant", description="Folder of the embedded local mode (no url)."
    )
    timeout: int | None = Field(default=None, description="Request timeout in seconds (server).")
    _client: QdrantClient | None = PrivateAttr(default=None)

    # validation errors would otherwise quote the input: a URL with a password in it
    model_config = ConfigDict(hide_input_in_errors=True)

    @field_validator("url")
    @classmethod
    def _url_without_credentials(cls, url: str | None) -> str | None:
        if url is None:
            return url
        # any "@": urlsplit misses a user:password whose password holds "/", "?" or "#" (and
        # then names a wrong host), and a server URL never needs one
        if "@" in url:
            host = url[url.rfind("@") + 1 :].split("/")[0]
            raise ValueError(
                f"url (host {host!r}) holds a user and password; give the server's API key "
                "with api_key=EnvVar('NAME') instead, so it is never shown"
            )
        return url

    def get_client(self) -> QdrantClient:
        """The server client (one per resource instance), or the process's local-mode client
        for `path`."""
        if not self.url:
            return local_client(self.path)
        if self._client is None:
            self._client = QdrantClient(url=self.url, api_key=self.api_key, timeout=self.timeout)
        return self._client

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        """Close the server client; the shared local-mode client stays open for the process."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __repr_args__(self):
        """Never show the API key, even where a plain string was given instead of an EnvVar."""
        for name, value in super().__repr_args__():
            yield (name, "***" if name == "api_key" and value is not None else value)
