"""`ElasticsearchResource`: an Elasticsearch client from configuration, the API key kept out of
sight (never in the UI, logs, metadata, reprs or error messages)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from dagster import ConfigurableResource
from elasticsearch import Elasticsearch
from pydantic import ConfigDict, Field, PrivateAttr, field_validator

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")


class ElasticsearchResource(ConfigurableResource):
    """An Elasticsearch cluster for `elasticsearch_index_asset` and the index's readers.

    `hosts` are URLs without credentials; give the API key (the `encoded` value Elasticsearch's
    create-API-key call returns) with `EnvVar`, so it is read from the environment in the process
    that connects and never shown. Outside a Dagster run, resolve `EnvVar`s first with
    `resource.process_config_and_initialize()`.

    >>> from dagster import EnvVar
    >>> resource = ElasticsearchResource(hosts=["http://127.0.0.1:9200"])
    >>> resource.get_client()
    <Elasticsearch(['http://127.0.0.1:9200'])>
    >>> ElasticsearchResource(hosts=["https://es.internal:9200"], api_key=EnvVar("ES_API_KEY"))
    ElasticsearchResource(hosts=['https://es.internal:9200'], verify_certs=True, ca_certs=None, request_timeout=60.0)
    """  # noqa: E501 - a repr is one line

    hosts: list[str] = Field(description="Elasticsearch URLs, e.g. https://es.internal:9200.")
    api_key: str | None = Field(
        default=None, repr=False, description="The encoded API key; set it with EnvVar('NAME')."
    )
    verify_certs: bool = Field(default=True, description="Verify the server's TLS certificate.")
    ca_certs: str | None = Field(
        default=None, description="Path to the CA bundle that signed the server's certificate."
    )
    request_timeout: float = Field(
        default=60.0, description="Seconds per request (bulk chunks included)."
    )
    _client: Elasticsearch | None = PrivateAttr(default=None)

    # validation errors would otherwise quote the input: a host with a password in it
    model_config = ConfigDict(hide_input_in_errors=True)

    @field_validator("hosts")
    @classmethod
    def _hosts_without_credentials(cls, hosts: list[str]) -> list[str]:
        if not hosts:
            raise ValueError("hosts is empty; expected at least one URL like http://host:9200")
        for host in hosts:
            parts = urlsplit(host)
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                raise ValueError(f"host {_masked(host)!r}: expected a URL like https://host:9200")
            # any "@" after the scheme: urlsplit misses a user:password whose password holds
            # "/", "?" or "#", and a host name never has one
            if parts.username is not None or parts.password is not None or "@" in host:
                raise ValueError(
                    f"host {_masked(host)!r} holds credentials; give an API key with "
                    "api_key=EnvVar('NAME') instead, so they are never shown"
                )
        return hosts

    def get_client(self) -> Elasticsearch:
        """One client per resource instance (its connection pool is reused)."""
        if self._client is None:
            options = {} if self.api_key is None else {"api_key": self.api_key}
            self._client = Elasticsearch(
                list(self.hosts),
                verify_certs=self.verify_certs,
                ca_certs=self.ca_certs,
                request_timeout=self.request_timeout,
                **options,
            )
        return self._client


def _masked(host: str) -> str:
    """The host as it may be shown: everything between its scheme (if any) and its last `@`,
    where a `user:password` is, replaced by `***`.

    >>> _masked("https://elastic:pa@ss@es.internal:9200"), _masked("user:pw@es.internal:9200")
    ('https://***@es.internal:9200', '***@es.internal:9200')
    """
    at = host.rfind("@")
    if at < 0:
        return host
    scheme = _SCHEME.match(host)
    return f"{scheme.group() if scheme else ''}***{host[at:]}"
