"""IO managers that store `datasets` objects in the `save_to_disk` layout, locally or on S3.

The value an asset returns decides what is stored; the downstream parameter's annotation
decides what is loaded (`Dataset` memory-mapped, `IterableDataset` streaming, `DatasetDict`,
`IterableDatasetDict`, or `dict[str, Dataset]` keyed by partition). The data work is done by
`ds_assets.storage`; this module maps Dagster contexts onto store keys.
"""

import types
import typing
from collections.abc import Mapping
from typing import Any

from dagster import (
    ConfigurableIOManager,
    DagsterError,
    InputContext,
    OutputContext,
    ResourceDependency,
)
from dagster_aws.s3 import S3Resource
from datasets import (
    Dataset,
    DatasetDict,
    IterableDataset,
    IterableDatasetDict,
    concatenate_datasets,
)
from pydantic import Field

from ds_assets.index.base import SearchIndex
from ds_assets.index.stored import BuiltIndex, open_stored
from ds_assets.ops.lazy import LINKED_MARKERS, LazyTransformError, combine_transformed
from ds_assets.storage import (
    DATASET,
    DATASET_DICT,
    ITERABLE_DATASET,
    ITERABLE_DATASET_DICT,
    DatasetStore,
    LocalStore,
    NotStoredError,
    SaveResult,
)
from ds_assets.storage.layout import INDEX
from ds_assets.storage.s3 import S3Store
from ds_assets.storage.save import SUPPORTED_TYPES, supported
from resources.metadata import index_metadata, output_metadata
from resources.partitions import partition_path

KIND_OF_TYPE = {
    Dataset: DATASET,
    IterableDataset: ITERABLE_DATASET,
    DatasetDict: DATASET_DICT,
    IterableDatasetDict: ITERABLE_DATASET_DICT,
}
ACCEPTED_ANNOTATIONS = (
    "Dataset, IterableDataset, DatasetDict, IterableDatasetDict, dict[str, Dataset], "
    "dict[str, IterableDataset], or no annotation"
)
SPLIT_METADATA_KEY = "ds_assets/split"
WELL_KNOWN_SPLITS = frozenset({"train", "test", "validation", "valid", "dev", "eval"})


class DatasetTypeError(DagsterError, TypeError):
    """An asset returned, or a downstream asked for, a type the IO manager cannot handle."""


class _DatasetIOManagerBase(ConfigurableIOManager):
    max_shard_size: str = Field(
        default="500MB", description="Largest Arrow shard written, as in datasets.save_to_disk."
    )
    cache_dir: str | None = Field(
        default=None,
        description="Views and S3 downloads; default $DS_ASSETS_CACHE or ~/.cache/ds_assets.",
    )

    def store(self) -> DatasetStore:
        raise NotImplementedError

    # -- output -------------------------------------------------------------------------------
    def handle_output(self, context: OutputContext, obj: Any) -> None:
        if obj is None and not context.has_asset_partitions:
            return
        store = self.store()
        key = tuple(context.asset_key.path)
        if isinstance(obj, BuiltIndex):
            context.add_output_metadata(self._save_index(context, store, key, obj))
            return
        if context.has_asset_partitions:
            if isinstance(obj, LINKED_MARKERS):  # one marker stands for every partition of the run
                obj = dict.fromkeys(context.asset_partition_keys, obj)
            values = _partition_values(context, obj)
            results = {
                pk: self._save(context, store, key + partition_path(pk), value, pk)
                for pk, value in values.items()
            }
            location = (
                store.uri(key + partition_path(next(iter(values))))
                if len(values) == 1
                else store.uri(key)
            )
        else:
            results = {"": self._save(context, store, key, obj)}
            location = store.uri(key)
            if _is_split_asset(context, key):
                base = store.uri(key[:-1])
                listed, left_out = store.update_split_index(key[:-1], _sibling_splits(context))
                context.log.info(f"{base}/dataset_dict.json lists splits {listed}")
                if left_out:
                    context.log.warning(
                        f"{base}: split folders {left_out} are no longer splits of this asset "
                        "and are left out of dataset_dict.json (their data stays; delete them "
                        "to free the space)"
                    )
        context.add_output_metadata(output_metadata(results, location))

    def _save(
        self, context: OutputContext, store: DatasetStore, key, value, partition: str | None = None
    ) -> SaveResult:
        if isinstance(value, LINKED_MARKERS):
            upstream = _linked_upstream(store, value.upstream, partition)
            result = store.save_linked(key, upstream, **value.link_options())
            context.log.info(
                f"stored {value} at {store.uri(key)} reusing the data of {store.uri(upstream)} "
                f"(version {result.manifest.source['version']}), no data copied"
            )
            return result
        if not supported(value):
            raise DatasetTypeError(
                f"asset {context.asset_key.to_user_string()} returned a "
                f"{type(value).__module__}.{type(value).__qualname__}; "
                f"{type(self).__name__} stores {SUPPORTED_TYPES}"
            )
        result = store.save(key, value, max_shard_size=self.max_shard_size)
        m = result.manifest
        context.log.info(
            f"stored {m.kind} with {m.num_rows} rows in {m.num_shards} shard(s), "
            f"{m.num_bytes} bytes, at {store.uri(key)} (version {m.version})"
        )
        return result

    def _save_index(
        self, context: OutputContext, store: DatasetStore, key, built: BuiltIndex
    ) -> dict[str, Any]:
        if context.has_asset_partitions:
            raise DatasetTypeError(
                f"asset {context.asset_key.to_user_string()}: an index asset indexes every "
                "partition of its upstream; it cannot be partitioned itself"
            )
        try:
            manifest = store.save_bundle(
                key, built.folder, built.dataset, built.info, versions=built.versions
            )
        except BaseException:
            if built.on_failed is not None:
                try:
                    built.on_failed()
                except Exception as error:  # the store's error is the one to raise
                    context.log.warning(f"could not move the index's alias back: {error}")
            raise
        finally:
            built.discard()
        if built.on_stored is not None:
            built.on_stored()
        indexed = ", ".join(
            f"{link['path']}@{link['version']}" for link in store.bundle_links(manifest)
        )
        context.log.info(
            f"stored {built.info['engine']} index of {manifest.num_rows} rows at "
            f"{store.uri(key)} (indexes {indexed})"
        )
        return index_metadata(manifest, built.sample, store.uri(key))

    # -- input --------------------------------------------------------------------------------
    def load_input(self, context: InputContext) -> Any:
        store = self.store()
        key = tuple(context.asset_key.path)
        if _index_wanted(store, key, context):
            return _open_index(store, key, context)
        kind, as_dict = _requested(context)
        if not context.has_asset_partitions:
            return _load(store, key, kind, context)
        allow_missing = bool((context.definition_metadata or {}).get("allow_missing_partitions"))
        values = {}
        for pk in context.asset_partition_keys:
            try:
                values[pk] = _load(store, key + partition_path(pk), kind, context)
            except NotStoredError:
                if not allow_missing:
                    raise NotStoredError(
                        f"partition {pk!r} of asset {context.asset_key.to_user_string()} is not "
                        f"materialized ({store.uri(key + partition_path(pk))}); materialize it, or "
                        "set metadata={'allow_missing_partitions': True} on the input"
                    ) from None
        if as_dict:
            return values
        if len(context.asset_partition_keys) == 1 and values:
            return next(iter(values.values()))
        return _concatenate(values, context)


class DatasetIOManager(_DatasetIOManagerBase):
    """Stores `datasets` objects under a local folder, in the `save_to_disk` layout.

    Asset key `["a", "b"]` is stored at `<base_dir>/a/b/`, partition `p` at
    `<base_dir>/a/b/p/`; `datasets.load_from_disk` opens any of them.

    >>> from dagster import Definitions
    >>> defs = Definitions(assets=[], resources={"io_manager": DatasetIOManager(base_dir="data")})
    """

    base_dir: str = Field(description="Root folder of the stored datasets.")

    def store(self) -> DatasetStore:
        return LocalStore(self.base_dir, cache_dir=self.cache_dir)


class S3DatasetIOManager(_DatasetIOManagerBase):
    """Stores `datasets` objects on S3 under `s3://<s3_bucket>/<s3_prefix>/<asset key>/`.

    Each save writes a new version prefix and commits a small manifest last, so readers never
    see a half-written version. Loads go through a local cache keyed by version.

    >>> from dagster_aws.s3 import S3Resource
    >>> manager = S3DatasetIOManager(s3_resource=S3Resource(), s3_bucket="ml", s3_prefix="ds")
    """

    s3_resource: ResourceDependency[S3Resource]
    s3_bucket: str = Field(description="S3 bucket name.")
    s3_prefix: str = Field(default="dagster", description="Key prefix inside the bucket.")

    def store(self) -> DatasetStore:
        return S3Store(
            self.s3_resource.get_client(), self.s3_bucket, self.s3_prefix, cache_dir=self.cache_dir
        )


# -- helpers ------------------------------------------------------------------------------------
def _partition_values(context: OutputContext, obj: Any) -> Mapping[str, Any]:
    keys = list(context.asset_partition_keys)
    if isinstance(obj, Mapping) and not isinstance(obj, (DatasetDict, IterableDatasetDict)):
        extra = sorted(set(map(str, obj)) - set(map(str, keys)))
        if extra:
            raise DatasetTypeError(
                f"asset {context.asset_key.to_user_string()} returned partitions {extra} "
                f"outside the run's partition keys {keys}"
            )
        by_str = {str(k): v for k, v in obj.items()}
        missing = sorted(str(pk) for pk in keys if str(pk) not in by_str)
        if missing:
            raise DatasetTypeError(
                f"asset {context.asset_key.to_user_string()} returned no value for partitions "
                f"{missing} of this run; return one per partition key {sorted(map(str, keys))}"
            )
        return {pk: by_str[str(pk)] for pk in keys}
    if len(keys) > 1:
        raise DatasetTypeError(
            f"asset {context.asset_key.to_user_string()} covers {len(keys)} partitions in one run; "
            f"return a dict keyed by partition key (of {SUPPORTED_TYPES}), got "
            f"{type(obj).__name__}"
        )
    return {keys[0]: obj}


def _annotation(context: InputContext) -> Any:
    return _strip_optional(context.dagster_type.typing_type if context.dagster_type else Any)


def _is_index_type(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, SearchIndex)


def _index_wanted(store: DatasetStore, key: tuple[str, ...], context: InputContext) -> bool:
    """An input annotated as a search index, or a bare one whose asset holds one (only then is
    the manifest read ahead: dataset inputs cost no extra request)."""
    annotation = _annotation(context)
    if _is_index_type(annotation):
        return True
    if annotation not in (Any, object, None) or context.has_asset_partitions:
        return False
    manifest = store.manifest(key)
    return manifest is not None and manifest.kind == INDEX


def _open_index(store: DatasetStore, key: tuple[str, ...], context: InputContext) -> SearchIndex:
    annotation = _annotation(context)
    wanted = _is_index_type(annotation)
    index = store.open_bundle(
        key, lambda manifest, folder, dataset: open_stored(manifest.index, folder, dataset)
    )
    if wanted and not isinstance(index, annotation):
        raise DatasetTypeError(
            f"input {context.name!r}: asset {context.asset_key.to_user_string()} is a "
            f"{type(index).__name__}, not a {annotation.__name__}"
        )
    return index


def _linked_upstream(store: DatasetStore, upstream: tuple[str, ...], partition: str | None):
    """The store key a linked partition reuses: the same partition of the upstream, or the
    whole upstream when that is not partitioned."""
    if partition is None:
        return upstream
    same_partition = upstream + partition_path(partition)
    if store.manifest(same_partition) is None and store.manifest(upstream) is not None:
        return upstream
    return same_partition


def _is_split_asset(context: OutputContext, key: tuple[str, ...]) -> bool:
    if len(key) < 2:
        return False
    flag = _split_flag(context)
    if flag is not None:
        return bool(flag)
    return key[-1] in WELL_KNOWN_SPLITS


def _split_flag(context: OutputContext) -> Any:
    flag = (context.definition_metadata or {}).get(SPLIT_METADATA_KEY)
    return getattr(flag, "value", flag)


def _sibling_splits(context: OutputContext) -> list[str] | None:
    """Every split of the asset's dict, when its definition names them (`split_assets` does):
    the split index then lists those only, not a split folder left by an older definition."""
    flag = _split_flag(context)
    return list(flag) if isinstance(flag, (list, tuple)) else None


def _requested(context: InputContext) -> tuple[str | None, bool]:
    """(kind to load or None for 'as stored', whether a dict keyed by partition is wanted)."""
    annotation = _annotation(context)
    if annotation in (Any, object, None, type(None)) or annotation is typing.Any:
        return None, False
    if annotation in KIND_OF_TYPE:
        return KIND_OF_TYPE[annotation], False
    origin = typing.get_origin(annotation)
    if origin in (dict, Mapping, typing.Dict):  # noqa: UP006
        args = typing.get_args(annotation)
        value = _strip_optional(args[1]) if len(args) == 2 else Any
        if value in KIND_OF_TYPE:
            return KIND_OF_TYPE[value], True
        if value is Any:
            return None, True
    raise DatasetTypeError(
        f"input {context.name!r} loads asset {context.asset_key.to_user_string()} annotated as "
        f"{annotation!r}; the dataset IO managers load {ACCEPTED_ANNOTATIONS}"
    )


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _load(store: DatasetStore, key: tuple[str, ...], kind: str | None, context: InputContext):
    try:
        return store.load(key, kind)
    except TypeError as error:
        raise DatasetTypeError(
            f"input {context.name!r} of asset {context.asset_key.to_user_string()}: {error}"
        ) from error


def _concatenate(values: Mapping[str, Any], context: InputContext) -> Any:
    items = list(values.values())
    if not items:
        raise NotStoredError(f"no partition of {context.asset_key.to_user_string()} is stored")
    what = f"partitions of {context.asset_key.to_user_string()}"
    named = {f"partition {pk!r}": v for pk, v in values.items()}
    try:
        if isinstance(items[0], (DatasetDict, IterableDatasetDict)):
            joined = {
                s: combine_transformed(
                    {name: v[s] for name, v in named.items()},
                    concatenate_datasets,
                    f"{what}, split {s!r}",
                )
                for s in items[0]
            }
            return type(items[0])(joined)
        return combine_transformed(named, concatenate_datasets, what)
    except LazyTransformError:
        raise
    except (ValueError, KeyError) as error:
        first = next(iter(values))
        differing = [
            pk for pk, v in values.items() if getattr(v, "features", None) != items[0].features
        ]
        raise DatasetTypeError(
            f"partitions of {context.asset_key.to_user_string()} cannot be concatenated: "
            f"features of {differing or list(values)} differ from partition {first!r} ({error})"
        ) from error
