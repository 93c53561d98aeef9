"""Index assets' values: what an index asset returns (`BuiltIndex`) and how a stored index is
opened again (`open_stored`), whatever its engine.

An index is stored as a bundle (see `DatasetStore.save_bundle`): its files, if the engine keeps
any on disk (FAISS, tantivy), beside a linked copy of the dataset version it indexes, and a
manifest whose `index` entry says what it is. Server engines (Qdrant, Elasticsearch) keep no
files: their manifest names the physical collection or index that was built (which readers
query: the alias moves on with the next materialization), the alias, and where the server is
(never a credential).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset

from ds_assets.index.base import SearchIndex, SearchIndexError

FAISS_FILE = "index.faiss"


@dataclass
class BuiltIndex:
    """What an index asset returns: the built index's files (a temporary folder, removed once
    stored) and its description, over the stored dataset `dataset` (a store key)."""

    dataset: tuple[str, ...]
    folder: str
    info: dict[str, Any]
    sample: dict[str, Any] = field(default_factory=dict)
    versions: list[str] | None = None  # of the dataset parts that were indexed, when known
    # server engines: once the bundle is stored, delete what the alias pointed at before; if it
    # could not be stored, move the alias back (so the last stored bundle stays readable)
    on_stored: Callable[[], None] | None = None
    on_failed: Callable[[], None] | None = None

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _open_faiss(info: Mapping[str, Any], folder: str, dataset: Dataset | None) -> SearchIndex:
    from ds_assets.index import faiss

    return faiss.FaissIndex.load(
        os.path.join(folder, FAISS_FILE),
        dataset=dataset,
        embed=info.get("embed"),
        metric=info.get("metric"),
        index_factory=info.get("index_factory"),
    )


def _open_fulltext(info: Mapping[str, Any], folder: str, dataset: Dataset | None) -> SearchIndex:
    from ds_assets.index import fulltext

    return fulltext.FullTextIndex.open(folder, dataset=dataset)


def _open_qdrant(info: Mapping[str, Any], folder: str, dataset: Dataset | None) -> SearchIndex:
    from qdrant_client import QdrantClient

    from ds_assets.index import qdrant

    if info.get("url"):
        client = QdrantClient(url=info["url"], api_key=os.environ.get("QDRANT_API_KEY"))
    else:
        client = qdrant.local_client(info["path"])
    name = _indexed_name(info, info.get("physical"), client.collection_exists, "collection")
    return qdrant.QdrantIndex(
        client, name, dataset=dataset, embed=info.get("embed"),
        row_limit=_row_limit(info, dataset),
    )  # fmt: skip


def _open_elasticsearch(
    info: Mapping[str, Any], folder: str, dataset: Dataset | None
) -> SearchIndex:
    from elasticsearch import ApiError, Elasticsearch

    from ds_assets.index import elasticsearch

    # manifests stored before these settings were recorded: the client's own defaults
    settings = ("verify_certs", "ca_certs", "request_timeout")
    connection = {name: info[name] for name in settings if info.get(name) is not None}
    client = Elasticsearch(
        info["hosts"], api_key=os.environ.get("ELASTICSEARCH_API_KEY"), **connection
    )
    physical = info.get("physical_name")

    def exists(name: str) -> bool:
        try:
            return bool(client.indices.exists(index=name))
        except ApiError as error:
            if error.meta.status == 403:  # a search-only API key: its searches will tell
                return True
            raise

    name = _indexed_name(
        info, physical if physical and "," not in physical else None, exists, "index"
    )
    return elasticsearch.ElasticsearchIndex(
        client, name, info["text_columns"], dataset=dataset,
        row_limit=_row_limit(info, dataset),
    )  # fmt: skip


def _indexed_name(
    info: Mapping[str, Any], physical: str | None, exists: Callable[[str], bool], kind: str
) -> str:
    """The physical collection or index the stored bundle built, which readers query: the alias
    moves on to the next materialization's, whose row positions are those of another dataset
    version. One that a newer materialization replaced (and deleted) is said so."""
    if not physical:  # stored before the physical name was recorded
        return info["alias"]
    if not exists(physical):
        raise SearchIndexError(
            f"the stored index names the {info.get('engine')} {kind} {physical!r}, which no "
            f"longer exists: a newer materialization of alias {info['alias']!r} replaced it. "
            "Open the index asset again (its latest materialization), or materialize it"
        )
    return physical


def _row_limit(info: Mapping[str, Any], dataset: Dataset | None) -> int | None:
    """An index that incremental materializations grow in place answers a reader only with
    rows of the version it opened: rows appended later are past the end of its dataset."""
    return len(dataset) if info.get("incremental") and dataset is not None else None


_OPENERS = {
    "faiss": _open_faiss,
    "fulltext": _open_fulltext,
    "qdrant": _open_qdrant,
    "elasticsearch": _open_elasticsearch,
}


def open_stored(info: Mapping[str, Any], folder: str, dataset: Dataset | None) -> SearchIndex:
    """The search object of a stored index, its rows read from `dataset`.

    Server engines connect with the URL in `info` and the API key in `$QDRANT_API_KEY` /
    `$ELASTICSEARCH_API_KEY` (credentials are never stored).
    """
    engine = info.get("engine")
    if engine not in _OPENERS:
        raise SearchIndexError(
            f"stored index of unknown engine {engine!r}; known: {list(_OPENERS)}"
        )
    return _OPENERS[engine](info, folder, dataset)
