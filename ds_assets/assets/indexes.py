"""Index assets: a dataset asset made searchable by FAISS, Qdrant, Elasticsearch or an embedded
full-text index (tantivy), one asset downstream of it.

Each materialization builds a new index and swaps it in atomically: FAISS and full-text files
through the store (a bundle beside the indexed dataset version), Qdrant collections and
Elasticsearch indexes behind an alias moved in one call. The IO manager records what was built
(count, dimension, metric, engine, physical name, alias, dataset version, build time, a sample
query with its top hits); a downstream asset taking the index as input gets a ready search
object whose `nearest_examples` reads rows from the indexed dataset version.

Incremental mode (`incremental=True`, Qdrant and Elasticsearch, over a partitioned dataset):
a materialization adds only the partitions the live collection/index does not hold yet, in
place (`qdrant.append`, `elasticsearch.append`), as rows after the last; the new bundle lists
the partitions in that order. It builds from scratch instead, saying why in the run's log, when
nothing usable is stored yet, the asset's arguments changed, an indexed partition was
materialized again or is gone, or the alias no longer points where the last materialization
left it. Readers of the previous bundle keep seeing exactly its rows (their searches are
limited to its row count); the points/documents being added are visible to queries on the
alias made without ds_assets as they arrive.
"""

import json
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetsDefinition,
    DagsterInvalidDefinitionError,
    DagsterInvariantViolationError,
    asset,
)
from datasets import Dataset, concatenate_datasets

from ds_assets.assets.common import Upstream, code_version, describe, split_options, upstream_key
from ds_assets.index.base import SearchIndex, StaleIndexError, embedder_path
from ds_assets.index.stored import FAISS_FILE, BuiltIndex
from ds_assets.ops.lazy import combine_transformed
from ds_assets.storage.base import DatasetStore, StaleVersionError
from ds_assets.storage.layout import DATASET, INDEX, new_version
from resources.partitions import partition_path

SAMPLE_HITS = 5
PREVIEW_CHARS = 80
REBUILD_TAG = "ds_assets/rebuild"  # a run tag: an incremental index is built from scratch
ALIAS_OF = {"qdrant": "collection", "elasticsearch": "index"}  # argument naming the alias
FAISS_METRICS = ("l2", "ip", "cosine")  # ds_assets.index.faiss.METRICS, without importing FAISS


def sample_query(index: SearchIndex, dataset: Dataset, query: Any) -> dict[str, Any]:
    """The top hits of one query, for the materialization's metadata."""
    if query is None or len(dataset) == 0:
        return {}
    scores, rows = index.search(query, k=min(SAMPLE_HITS, len(dataset)))
    shown = dataset.select(rows).with_format(None) if rows else []
    hits = [
        {"score": float(score), "row": int(row), "preview": _preview(example)}
        for score, row, example in zip(scores, rows, shown, strict=False)
    ]
    return {"query": _short(query), "hits": hits}


def _preview(example: dict) -> str:
    texts = [f"{k}={_short(v)}" for k, v in example.items() if isinstance(v, (str, int, float))]
    return "; ".join(texts)[:PREVIEW_CHARS]


def _short(value: Any) -> str:
    if isinstance(value, str):
        return value[:PREVIEW_CHARS]
    if isinstance(value, (list, tuple)):
        head = ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in value[:4])
        return f"[{head}{', …' if len(value) > 4 else ''}] ({len(value)} values)"
    return str(value)[:PREVIEW_CHARS]


def _first_value(dataset: Dataset, column: str) -> Any:
    return dataset.with_format(None)[0][column] if len(dataset) else None


def _first_words(dataset: Dataset, column: str, words: int = 3) -> str | None:
    """A sample full-text query: the first words of the first row's text (of its first texts
    for a list column), as plain lowercase words, so that its punctuation or an `AND` is never
    read as query syntax.

    >>> _first_words(Dataset.from_dict({"t": ['Note: "AND" price: $5']}), "t")
    'note and price'
    """
    first = _first_value(dataset, column)
    texts = first if isinstance(first, list) else [first]
    found = re.findall(r"\w+", " ".join(text for text in texts if isinstance(text, str)))
    return " ".join(word.lower() for word in found[:words]) or None


def _indexed_keys(context: AssetExecutionContext, key: AssetKey):
    """The store key of the indexed dataset, or of each partition, in the order the input
    loaded them concatenated (row positions in the index refer to that order)."""
    if context.assets_def.partitions_def is None and _input_partitioned(context):
        keys = context.asset_partition_keys_for_input("dataset")
        return [tuple(key.path) + partition_path(pk) for pk in keys]
    return tuple(key.path)


def _input_partitioned(context: AssetExecutionContext) -> bool:
    try:
        context.asset_partitions_def_for_input("dataset")
    except DagsterInvariantViolationError:  # Dagster's way of saying "not partitioned"
        return False
    return True


# Builds the index of `dataset`; server engines call `before_swap` just before they move their
# alias to the new collection/index (it raises when the input was stored again meanwhile).
Builder = Callable[[AssetExecutionContext, Dataset, Callable[[], None]], BuiltIndex]

# Appends `dataset` (the rows of the new partitions) to the live index as rows `row_offset` and
# up; `stored` is the last materialization's index info. Returns the index and its new info.
Appender = Callable[
    [AssetExecutionContext, Dataset, int, dict[str, Any]], tuple[SearchIndex, dict[str, Any]]
]


def _index_asset(
    engine: str,
    name: str,
    upstream: Upstream,
    arguments: dict[str, Any],
    build: Builder,
    options: dict[str, Any],
    required_resource_keys: set[str] = frozenset(),
    append: Appender | None = None,
) -> AssetsDefinition:
    key = upstream_key(upstream)
    asset_options = split_options(options, f"{engine}_index_asset")
    description = asset_options.pop("description", None) or describe(f"{engine} index", arguments)
    resource_keys = set(required_resource_keys) | {"io_manager"}  # reads the store's versions
    if engine in ALIAS_OF:  # builds and appends moving one alias must not overlap: one at a time
        asset_options.setdefault("pool", f"ds_assets_index/{engine}/{arguments[ALIAS_OF[engine]]}")

    @asset(
        name=name,
        ins={"dataset": AssetIn(key=key)},
        description=f"{description}\n\nindexes: `{key.to_user_string()}`",
        code_version=code_version(f"{engine}_index", arguments),
        required_resource_keys=resource_keys,
        kinds={engine} if engine != "fulltext" else {"tantivy"},
        **asset_options,
    )
    def _index(context: AssetExecutionContext, dataset: Dataset):
        started = time.perf_counter()
        built = _appended(context, key, arguments, append) if append else None
        if built is None:
            dataset, versions = _pinned_input(context, key, dataset)
            built = build(context, dataset, _still_at(context, key, versions))
            built.dataset = _indexed_keys(context, key)
            built.versions = versions
        if append:
            built.info.update(incremental=True, arguments=arguments)
        built.info["build_seconds"] = round(time.perf_counter() - started, 3)
        context.log.info(f"built {engine} index {built.info}")
        return built

    return _index


def _appended(
    context: AssetExecutionContext, key: AssetKey, arguments: dict[str, Any], append: Appender
) -> BuiltIndex | None:
    """The incremental mode: the new partitions appended to the live index, or None (and the
    reason in the log) when the index must be built from scratch."""
    store: DatasetStore = context.resources.io_manager.store()
    parts = _indexed_keys(context, key)
    if isinstance(parts, tuple):
        return _rebuild(context, f"{key.to_user_string()} is not partitioned")
    if context.run.tags.get(REBUILD_TAG, "").lower() in ("1", "true", "yes"):
        return _rebuild(context, f"the run has the tag {REBUILD_TAG}")
    found = _indexed_parts(store, tuple(context.asset_key.path), parts, arguments)
    if isinstance(found, str):
        return _rebuild(context, found)
    indexed, versions, held, stored = found
    new = [part for part in parts if part not in indexed]
    versions += [store.manifest(part).version for part in new]
    whole = _loaded(store, indexed + new, key)
    rows = whole.select(range(held, len(whole)) if held < len(whole) else [])
    try:
        index, info = append(context, rows, held, stored)
    except StaleIndexError as error:
        return _rebuild(context, str(error))
    names = [part[-1] for part in new]
    context.log.info(f"appended {len(names)} partition(s) {names} as rows {held} and up")
    query = _sample_query_of(info, whole)
    sample = sample_query(index, whole, query) if query is not None else {}
    info.update(appended=names)
    folder = tempfile.mkdtemp(prefix="ds-assets-append-")
    return BuiltIndex(indexed + new, folder, info, sample, versions)


def _pinned_input(
    context: AssetExecutionContext, key: AssetKey, loaded: Dataset, attempts: int = 5
) -> tuple[Dataset, list[str] | None]:
    """(the input, the stored versions it is): Dagster loaded `loaded` before this op began, so
    a save of the upstream in between would pass for the version noted here while the older
    rows get indexed. The input is read again between two readings of the versions instead,
    and kept once they agree (a save always makes a new version)."""
    for _ in range(attempts):
        versions = _versions(context, key)
        if versions is None:  # not one of ds_assets' stores: no versions to pin
            return loaded, None
        store: DatasetStore = context.resources.io_manager.store()
        dataset = _loaded(store, _indexed_keys(context, key), key)
        if _versions(context, key) == versions:
            return dataset, versions
    raise StaleVersionError(
        f"{key.to_user_string()} was stored again during each of {attempts} attempts to read "
        "one version of it to index; materialize the index again once it settles"
    )


def _still_at(
    context: AssetExecutionContext, key: AssetKey, versions: list[str] | None
) -> Callable[[], None]:
    """A check that the input is still at `versions`: run before a server engine moves its
    alias, so that a build whose bundle could not be stored (`save_bundle` refuses a part stored
    again meanwhile) never replaces the live collection/index either."""

    def check() -> None:
        if versions is not None and _versions(context, key) != versions:
            raise StaleVersionError(
                f"{key.to_user_string()} was stored again while it was being indexed; the "
                "alias stays on the previous index: materialize the index again"
            )

    return check


def _loaded(store: DatasetStore, parts: tuple | list, key: AssetKey) -> Dataset:
    """The input as the IO manager loads it: one key, or the partitions concatenated in order
    with their lazy chain kept."""
    if isinstance(parts, tuple):
        return store.load(parts, DATASET)
    depth = len(key.path)
    loaded = {f"partition {'/'.join(part[depth:])!r}": store.load(part, DATASET) for part in parts}
    if len(loaded) == 1:
        return next(iter(loaded.values()))
    return combine_transformed(
        loaded, concatenate_datasets, f"partitions of {key.to_user_string()}"
    )


def _versions(context: AssetExecutionContext, key: AssetKey) -> list[str] | None:
    """The stored versions of the parts about to be indexed, so that the bundle links those
    (None when the IO manager is not one of ds_assets', which would not store the index)."""
    parts = _indexed_keys(context, key)
    store_of = getattr(context.resources.io_manager, "store", None)
    if store_of is None:
        return None
    store: DatasetStore = store_of()
    manifests = [store.manifest(part) for part in ([parts] if isinstance(parts, tuple) else parts)]
    return [manifest.version for manifest in manifests] if all(manifests) else None


def _rebuild(context: AssetExecutionContext, reason: str) -> None:
    context.log.info(f"incremental: building from scratch ({reason})")


def _indexed_parts(
    store: DatasetStore, index_key: tuple[str, ...], parts: list, arguments: dict[str, Any]
) -> tuple[list, list[str], int, dict[str, Any]] | str:
    """(the input parts the stored index holds, in its order; their versions; its row count;
    its info), or why the stored index cannot take new parts as it is."""
    previous = store.manifest(index_key)
    if previous is None or previous.kind != INDEX:
        return "no index stored yet"
    info = dict(previous.index or {})
    if not info.get("incremental"):
        return "the stored index was not built with incremental=True"
    stored, wanted = info.get("arguments") or {}, json.loads(json.dumps(arguments))
    changed = sorted(name for name in {*stored, *wanted} if stored.get(name) != wanted.get(name))
    if changed:
        return f"the stored index was built with other {', '.join(changed)}"
    by_location = {store.uri(part): part for part in parts}
    indexed = []
    for link in store.bundle_links(previous):
        part = by_location.get(link["path"])
        if part is None:
            return f"{link['path']} is no longer a partition of the input"
        current = store.manifest(part)
        if current is None or current.version != link["version"]:
            return f"{link['path']} was materialized again since it was indexed"
        indexed.append(part)
    versions = [link["version"] for link in store.bundle_links(previous)]
    return indexed, versions, previous.num_rows, info


def _sample_query_of(info: dict[str, Any], dataset: Dataset) -> Any:
    if info.get("engine") == "elasticsearch":
        return _first_words(dataset, info["text_columns"][0])
    return _first_value(dataset, info["column"]) if info.get("column") else None


def _kept_until_stored(
    described: Callable[[], BuiltIndex], retire: Callable[[], None], roll_back: Callable[[], None]
) -> BuiltIndex:
    """A server engine's build, its alias moved and its previous collection/index kept:
    `described()` gives what the asset returns; the previous one is deleted (`retire`) once the
    IO manager stored the bundle, and the alias moved back (`roll_back`) when describing or
    storing fails, so the last stored bundle and the alias never part ways."""
    try:
        built = described()
    except BaseException:
        try:
            roll_back()
        except Exception as error:  # the description's error is the one to raise
            warnings.warn(f"could not move the index's alias back: {error}", stacklevel=2)
        raise
    built.on_stored, built.on_failed = retire, roll_back
    return built


def _qdrant_location(resource: Any) -> dict[str, str]:
    """Where readers of the stored index find Qdrant: the server URL, or the local folder as
    an absolute path (a reader may run from another working directory)."""
    return {"url": resource.url} if resource.url else {"path": os.path.realpath(resource.path)}


def _elasticsearch_connection(resource: Any) -> dict[str, Any]:
    """How readers of the stored index connect: hosts and TLS settings (the API key stays in
    the environment, never in the manifest)."""
    return {
        "hosts": list(resource.hosts),
        "verify_certs": resource.verify_certs,
        "ca_certs": resource.ca_certs,
        "request_timeout": resource.request_timeout,
    }


def _refuse_incremental(factory: str, name: str, options: dict[str, Any]) -> None:
    if "incremental" in options:
        raise DagsterInvalidDefinitionError(
            f"{factory}({name!r}): incremental=True is for the server engines (Qdrant, "
            "Elasticsearch); FAISS and full-text indexes are rebuilt from all partitions at "
            "each materialization"
        )


def faiss_index_asset(
    name: str,
    upstream: Upstream,
    column: str,
    *,
    embed: Callable | str | None = None,
    index_factory: str = "Flat",
    metric: str = "l2",
    **options: Any,
) -> AssetsDefinition:
    """A FAISS index over a vector column (or a text column with `embed`, a `"module:function"`
    from a batch of strings to a float32 matrix), stored as a `.faiss` file beside the
    indexed dataset version. `metric` is "l2", "ip" or "cosine".

    >>> faiss_index_asset("docs_faiss", "docs", "embedding").key.path
    ['docs_faiss']
    """
    if metric not in FAISS_METRICS:  # said at definition, not at the first run
        raise DagsterInvalidDefinitionError(
            f"faiss_index_asset({name!r}): metric must be one of {list(FAISS_METRICS)}, "
            f"got {metric!r}"
        )
    _refuse_incremental("faiss_index_asset", name, options)
    embed_path = embedder_path(embed)
    arguments = {"column": column, "embed": embed_path, "index_factory": index_factory,
                 "metric": metric}  # fmt: skip

    def build(context: AssetExecutionContext, dataset: Dataset, before_swap) -> BuiltIndex:
        from ds_assets.index import faiss

        index = faiss.build(
            dataset, column, embed=embed_path, index_factory=index_factory, metric=metric
        )
        folder = tempfile.mkdtemp(prefix="ds-assets-faiss-")
        index.save(os.path.join(folder, FAISS_FILE))
        info = {"engine": "faiss", **index.describe(), "column": column, "embed": embed_path}
        sample = sample_query(index, dataset, _first_value(dataset, column))
        return BuiltIndex((), folder, info, sample)

    return _index_asset("faiss", name, upstream, arguments, build, options)


def fulltext_index_asset(
    name: str,
    upstream: Upstream,
    text_columns: Sequence[str],
    **options: Any,
) -> AssetsDefinition:
    """An embedded full-text index (tantivy: BM25, phrases) over text columns, stored on disk
    beside the indexed dataset version; no server needed.

    >>> fulltext_index_asset("docs_text", "docs", ["title", "body"]).key.path
    ['docs_text']
    """
    _refuse_incremental("fulltext_index_asset", name, options)
    columns = [text_columns] if isinstance(text_columns, str) else list(text_columns)
    arguments = {"text_columns": columns}

    def build(context: AssetExecutionContext, dataset: Dataset, before_swap) -> BuiltIndex:
        from ds_assets.index import fulltext

        folder = tempfile.mkdtemp(prefix="ds-assets-fulltext-")
        try:
            index = fulltext.build(dataset, columns, folder)
            info = {"engine": "fulltext", **index.describe(), "text_columns": columns}
            query = _first_words(dataset, columns[0])
            return BuiltIndex((), folder, info, sample_query(index, dataset, query))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    return _index_asset("fulltext", name, upstream, arguments, build, options)


def qdrant_index_asset(
    name: str,
    upstream: Upstream,
    *,
    collection: str,
    column: str | None = None,
    embed: Callable | str | None = None,
    distance: str = "Cosine",
    payload_columns: Sequence[str] = (),
    id_column: str | None = None,
    incremental: bool = False,
    qdrant_resource_key: str = "qdrant",
    **options: Any,
) -> AssetsDefinition:
    """A Qdrant collection behind the alias `collection`: each materialization fills a new
    physical collection `<collection>__<version>`, then moves the alias and drops the old one.
    With `incremental=True` over a partitioned dataset, new partitions are added to the live
    collection instead (see the module docstring).

    >>> qdrant_index_asset("docs_qdrant", "docs", collection="docs", column="embedding").key.path
    ['docs_qdrant']
    """
    embed_path = embedder_path(embed)
    arguments = {"collection": collection, "column": column, "embed": embed_path,
                 "distance": distance, "payload_columns": list(payload_columns),
                 "id_column": id_column}  # fmt: skip

    def build(context: AssetExecutionContext, dataset: Dataset, before_swap) -> BuiltIndex:
        from ds_assets.index import qdrant

        resource = getattr(context.resources, qdrant_resource_key)
        client, version = resource.get_client(), new_version().lower()
        index = qdrant.build(
            client, dataset, collection, column=column, embed=embed_path, distance=distance,
            payload_columns=list(payload_columns), id_column=id_column, version=version,
            before_swap=before_swap, keep_previous=True,
        )  # fmt: skip
        physical = qdrant.physical_name(collection, version)

        def described() -> BuiltIndex:
            info = {"engine": "qdrant", **index.describe(), **_qdrant_location(resource),
                    "embed": embed_path}  # fmt: skip
            sample = sample_query(index, dataset, _first_value(dataset, column)) if column else {}
            return BuiltIndex((), tempfile.mkdtemp(prefix="ds-assets-qdrant-"), info, sample)

        return _kept_until_stored(
            described,
            lambda: qdrant.retire(client, collection, index.replaced),
            lambda: qdrant.roll_back(client, collection, physical, index.replaced),
        )

    def append(context: AssetExecutionContext, rows: Dataset, offset: int, stored: dict):
        from ds_assets.index import qdrant

        resource = getattr(context.resources, qdrant_resource_key)
        index = qdrant.append(
            resource.get_client(), rows, collection, column=column, embed=embed_path,
            payload_columns=list(payload_columns), id_column=id_column, row_offset=offset,
            physical=stored.get("physical"),
        )  # fmt: skip
        where = _qdrant_location(resource)
        return index, {"engine": "qdrant", **index.describe(), **where, "embed": embed_path}

    return _index_asset(
        "qdrant", name, upstream, arguments, build, options, {qdrant_resource_key},
        append if incremental else None,
    )  # fmt: skip


def elasticsearch_index_asset(
    name: str,
    upstream: Upstream,
    *,
    index: str,
    text_columns: Sequence[str],
    mappings: dict | None = None,
    settings: dict | None = None,
    id_column: str | None = None,
    incremental: bool = False,
    elasticsearch_resource_key: str = "elasticsearch",
    **options: Any,
) -> AssetsDefinition:
    """An Elasticsearch index behind the alias `index`: each materialization bulk-loads a new
    `<index>__<version>`, refreshes it, moves the alias in one call and deletes the old one; a
    rejected document fails the run and the alias stays where it was. With `incremental=True`
    over a partitioned dataset, new partitions are added to the live index instead (see the
    module docstring); a rejected document then fails the run and what it added is removed.

    >>> elasticsearch_index_asset("docs_es", "docs", index="docs", text_columns=["body"]).key.path
    ['docs_es']
    """
    columns = [text_columns] if isinstance(text_columns, str) else list(text_columns)
    arguments = {"index": index, "text_columns": columns, "mappings": mappings,
                 "settings": settings, "id_column": id_column}  # fmt: skip

    def build(context: AssetExecutionContext, dataset: Dataset, before_swap) -> BuiltIndex:
        from ds_assets.index import elasticsearch

        resource = getattr(context.resources, elasticsearch_resource_key)
        client, version = resource.get_client(), new_version().lower()
        built = elasticsearch.build(
            client, dataset, index, columns, mappings=mappings, settings=settings,
            id_column=id_column, version=version, before_swap=before_swap, keep_previous=True,
        )  # fmt: skip
        physical = elasticsearch.physical_name(index, version)

        def described() -> BuiltIndex:
            info = {"engine": "elasticsearch", **built.describe(),
                    **_elasticsearch_connection(resource), "text_columns": columns}  # fmt: skip
            sample = sample_query(built, dataset, _first_words(dataset, columns[0]))
            return BuiltIndex((), tempfile.mkdtemp(prefix="ds-assets-es-"), info, sample)

        return _kept_until_stored(
            described,
            lambda: elasticsearch.retire(client, index, built.replaced),
            lambda: elasticsearch.roll_back(client, index, physical, built.replaced),
        )

    def append(context: AssetExecutionContext, rows: Dataset, offset: int, stored: dict):
        from ds_assets.index import elasticsearch

        resource = getattr(context.resources, elasticsearch_resource_key)
        built = elasticsearch.append(
            resource.get_client(), rows, index, columns, id_column=id_column, row_offset=offset,
            physical=stored.get("physical_name"),
        )  # fmt: skip
        described = built.describe()
        for name in ("num_rows", "dataset_fingerprint"):  # what build() recorded of its rows
            described.pop(name, None)
        info = {"engine": "elasticsearch", **described, **_elasticsearch_connection(resource),
                "text_columns": columns}  # fmt: skip
        return built, info

    return _index_asset(
        "elasticsearch", name, upstream, arguments, build, options, {elasticsearch_resource_key},
        append if incremental else None,
    )  # fmt: skip
