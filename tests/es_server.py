"""An Elasticsearch for the tests: `$ELASTICSEARCH_URL` when set (a real cluster; its API key, if
any, in `$ELASTICSEARCH_API_KEY`), else the Elasticsearch-REST server of the `noida-db` wheel
started on a free loopback port for the session and stopped by PID.

noida-db 0.2.3 answers the official client (8 and 9) for what the index tests use, checked by
hand against it: index creation with mappings, settings and `_meta`, multi-fields, analyzers
(standard, english), bulk (`create` ops, per-document errors for values that do not fit the
mapping with Elasticsearch's error types and reasons, 409 for an existing id), refresh and
`refresh_interval`, count, `match` / `multi_match` / `match_phrase` with BM25 scores (and
`explain`), bool queries with `filter` (term, terms, range on numbers and dates, exists, nested
bool), `docvalue_fields`, `_source` filtering, `msearch` (per-query errors), `mget`, aliases
(atomic `update_aliases` with `must_exist`, `remove_index`, 404 for a missing alias, refusal of
an alias named like an index), kNN on `dense_vector` with a filter, `_analyze`.
What it does not do like Elasticsearch:
- no authentication or authorization: any API key is accepted, so the credential test answers
  401 from a loopback stand-in instead (tests/test_index_elasticsearch.py);
- `boost` inside a `match_phrase` field object is ignored (a `bool` wrapper's boost is applied);
- a document may carry metadata fields such as `_id` in its source (Elasticsearch rejects it);
- a query scans: its time grows with the number of documents (about 1 s at 10,000 documents of
  50 words), and bulk loading slows as an index grows; fine for tests, not a benchmark of
  Elasticsearch;
- it prints a harmless "GLIBC_2.39 not found" warning at start.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from elasticsearch import Elasticsearch

from tests.servers import free_port, stop_process


@dataclass
class ElasticsearchServer:
    """A reachable Elasticsearch (REST) server; `process` is None for an external cluster."""

    url: str
    api_key: str | None = None
    process: subprocess.Popen | None = None
    data_dir: str | None = None
    created: set[str] = field(default_factory=set)

    def client(self, **options) -> Elasticsearch:
        if self.api_key:
            options.setdefault("api_key", self.api_key)
        options.setdefault("request_timeout", 60)
        return Elasticsearch(self.url, **options)

    def unique_name(self, prefix: str = "ds-assets-test") -> str:
        """A fresh alias name; its `<name>__*` indices are deleted when the session ends."""
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.created.add(name)
        return name

    def log_tail(self, characters: int = 3000) -> str:
        if not self.data_dir:
            return ""
        with contextlib.suppress(OSError), open(os.path.join(self.data_dir, "server.log")) as log:
            return log.read()[-characters:]
        return ""

    def stop(self) -> None:
        if self.process is None:
            self._delete_created()
            return
        stop_process(self.process)
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _delete_created(self) -> None:
        # a shared cluster: remove what the tests made, and nothing else
        client = self.client()
        for name in self.created:
            with contextlib.suppress(Exception):
                # by name: Elasticsearch 8 refuses wildcard deletes by default
                found = client.indices.get(index=f"{name}__*", expand_wildcards="all").body
                if found:
                    client.indices.delete(index=",".join(found))


def noida_binary() -> str | None:
    spec = importlib.util.find_spec("noida_db")
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = os.path.join(spec.submodule_search_locations[0], "noida-db")
    return candidate if os.path.exists(candidate) else None


def start_noida(timeout: float = 60) -> ElasticsearchServer:
    """Start the noida-db binary itself (not its wrapper script, whose PID is not the server's)
    with only Elasticsearch, on a free loopback port; wait until the client gets an answer."""
    binary = noida_binary()
    if binary is None:
        raise RuntimeError("the noida-db wheel (its noida-db binary) is not installed")
    if not os.access(binary, os.X_OK):
        raise RuntimeError(f"{binary} is not executable")
    data_dir = tempfile.mkdtemp(prefix="noida-es-")
    port = free_port()
    command = [binary, "start", "--data-dir", os.path.join(data_dir, "data"),
               "--host", "127.0.0.1", "--only", "elasticsearch",
               "--elasticsearch-port", str(port)]  # fmt: skip
    log = open(os.path.join(data_dir, "server.log"), "w")  # noqa: SIM115 - lives with the process
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    server = ElasticsearchServer(f"http://127.0.0.1:{port}", None, process, data_dir)
    try:
        client = server.client(request_timeout=2)
    except BaseException:
        server.stop()
        raise
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.info()
            return server
        except Exception as error:
            if process.poll() is not None or time.monotonic() > deadline:
                tail = server.log_tail()
                server.stop()
                raise RuntimeError(f"noida-db did not start: {error}\n{tail}") from error
            time.sleep(0.2)


def external_server() -> ElasticsearchServer | None:
    url = os.environ.get("ELASTICSEARCH_URL")
    if not url:
        return None
    return ElasticsearchServer(url, os.environ.get("ELASTICSEARCH_API_KEY") or None)


@pytest.fixture(scope="session")
def elasticsearch_server() -> Iterator[ElasticsearchServer]:
    """`$ELASTICSEARCH_URL`, else noida-db for the session. Cannot start: fail under CI, else
    skip with the reason."""
    server = external_server()
    if server is None:
        try:
            server = start_noida()
        except RuntimeError as error:
            if os.environ.get("CI"):
                raise
            pytest.skip(f"cannot start the noida-db Elasticsearch server: {error}")
    yield server
    server.stop()
