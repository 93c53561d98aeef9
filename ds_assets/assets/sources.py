"""Source assets: one dynamic partition per file (XML, HDF5, WebDataset shard, any format) or
per range of new SQL rows, read by the readers of `ds_assets.formats`.

The sensors of `ds_assets.sensors` add the partitions as files and rows arrive; a backfill of
many partitions runs as one run (`BackfillPolicy.single_run()`) that stores one version per
partition, and an unpartitioned downstream asset loads them all, concatenated.
"""

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    DagsterInvalidDefinitionError,
    DynamicPartitionsDefinition,
    asset,
)
from datasets import Dataset

from ds_assets.assets.common import code_version, describe, key_prefix_parts, split_options
from ds_assets.formats.files import (
    is_s3,
    local_copy,
    normalize_location,
    s3_client_of,
    split_s3,
    url_of,
)
from ds_assets.formats.rows import parse_range_key

SOURCE_METADATA_KEY = "ds_assets/source"
FileReader = Callable[[str, Any], Dataset]


def _partitions_name(name: str, options: dict[str, Any], kind: str) -> str:
    prefix = key_prefix_parts(options.get("key_prefix"))
    return "__".join([*prefix, name, kind]).replace("-", "_")


def file_source(
    name: str,
    location: str,
    pattern: str,
    read: FileReader,
    *,
    local_file: bool = True,
    s3_resource_key: str = "s3",
    reader_arguments: dict[str, Any] | None = None,
    features: Any = None,
    **options: Any,
) -> AssetsDefinition:
    """A source asset with one dynamic partition per file under `location` matching `pattern`.

    `location` is a local folder or an `s3://bucket/prefix` (read with the dagster-aws
    `S3Resource` under `s3_resource_key`). `read(path, s3_client)` turns one file into a
    `Dataset`; with `local_file=True` it gets a local path (S3 files are downloaded to a
    temporary file first), otherwise the path or `s3://` URL itself. The partition key is the
    file's name relative to `location`. `features`: the Features the reader declares, if any;
    only for the code version (changing them marks the asset stale). Pair it with
    `new_files_sensor`.

    >>> import datasets
    >>> csv = file_source("clicks", "incoming/", "*.csv",
    ...                   lambda path, _: datasets.Dataset.from_csv(path))
    >>> csv.partitions_def.name
    'clicks__files'
    """
    if "partitions_def" in options:
        raise DagsterInvalidDefinitionError(
            f"{name}: a file source is partitioned by its files; partitions_def is not an option"
        )
    asset_options = split_options(options, "file_source")
    partitions = DynamicPartitionsDefinition(name=_partitions_name(name, options, "files"))
    location = normalize_location(location)  # S3:// and s3a:// as s3://, other URLs refused
    on_s3 = is_s3(location)
    if on_s3:
        split_s3(location)  # validates the URL now, not in the first run
    arguments = {"location": location, "pattern": pattern, **(reader_arguments or {})}
    description = asset_options.pop("description", None) or describe("read files", arguments)
    metadata = {
        **asset_options.pop("metadata", {}),
        SOURCE_METADATA_KEY: {"kind": "files", "location": location, "pattern": pattern},
    }

    @asset(
        name=name,
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.single_run(),
        required_resource_keys={s3_resource_key} if on_s3 else set(),
        description=description,
        metadata=metadata,
        code_version=code_version(
            "file_source", {**arguments, **_features_version(features)}, read
        ),
        **asset_options,
    )
    def _source(context: AssetExecutionContext) -> dict[str, Dataset]:
        client = s3_client_of(getattr(context.resources, s3_resource_key)) if on_s3 else None
        values = {}
        for file_name in context.partition_keys:
            url = url_of(location, file_name)
            context.log.info(f"reading {url}")
            if local_file:
                with local_copy(location, file_name, client) as path, _named_by(path, url):
                    values[file_name] = read(path, client)
            else:
                values[file_name] = read(url, client)
        return values

    return _source


def _features_version(features: Any) -> dict[str, str]:
    """Declared Features as code-version arguments: what a reader casts to changes what it
    reads, though the reader's source stays the same."""
    return {} if features is None else {"features": repr(features)}


@contextlib.contextmanager
def _named_by(path: str, url: str) -> Iterator[None]:
    """Errors raised inside name `url` where they named `path`, the temporary download of an
    S3 file that the user never saw (the error keeps its type and traceback)."""
    try:
        yield
    except Exception as error:
        if path != url:  # a download: locally the reader was given the file itself
            error.args = tuple(
                arg.replace(path, url) if isinstance(arg, str) else arg for arg in error.args
            )
            for attribute in ("filename", "source", "name"):
                if getattr(error, attribute, None) == path:
                    with contextlib.suppress(AttributeError):
                        setattr(error, attribute, url)
        raise


def xml_source(
    name: str,
    location: str,
    pattern: str = "*.xml",
    *,
    row_tag: str = "row",
    namespaces: dict[str, str] | None = None,
    encoding: str | None = None,
    features: Any = None,
    **options: Any,
) -> AssetsDefinition:
    """One partition per XML file; each `row_tag` element is a row (see `ds_assets.formats.xml`).

    >>> xml_source("orders", "s3://ml/orders", row_tag="order").key.path
    ['orders']
    """
    from ds_assets.formats import xml

    def read(path: str, _client: Any) -> Dataset:
        return xml.parse(path, row_tag=row_tag, namespaces=namespaces, encoding=encoding,
                         features=features)  # fmt: skip

    arguments = {"row_tag": row_tag, "namespaces": namespaces, "encoding": encoding}
    return file_source(
        name, location, pattern, read, reader_arguments=arguments, features=features, **options
    )


def hdf5_source(
    name: str,
    location: str,
    pattern: str = "*.h5",
    *,
    datasets: Sequence[str] | None = None,
    features: Any = None,
    **options: Any,
) -> AssetsDefinition:
    """One partition per HDF5 file; its datasets become columns (see `ds_assets.formats.hdf5`).

    >>> hdf5_source("scans", "incoming/scans").key.path
    ['scans']
    """
    from ds_assets.formats import hdf5

    def read(path: str, _client: Any) -> Dataset:
        return hdf5.parse(path, datasets=datasets, features=features)

    arguments = {"datasets": list(datasets) if datasets else None}
    return file_source(
        name, location, pattern, read, reader_arguments=arguments, features=features, **options
    )


def webdataset_source(
    name: str,
    location: str,
    pattern: str = "*.tar*",
    *,
    decode: bool = True,
    features: Any = None,
    **options: Any,
) -> AssetsDefinition:
    """One partition per WebDataset shard, streamed from disk or S3, never extracted
    (see `ds_assets.formats.webdataset`).

    >>> webdataset_source("images", "s3://ml/shards").key.path
    ['images']
    """
    from ds_assets.formats import webdataset

    def read(url: str, client: Any) -> Dataset:
        return webdataset.parse(url, decode=decode, s3_client=client, features=features)

    arguments = {"decode": decode}
    return file_source(
        name, location, pattern, read, local_file=False, reader_arguments=arguments,
        features=features, **options,
    )  # fmt: skip


def sql_source(
    name: str,
    table: str,
    *,
    cursor_column: str | None = None,
    columns: Sequence[str] | None = None,
    schema: str | None = None,
    sql_resource_key: str = "sql",
    features: Any = None,
    **options: Any,
) -> AssetsDefinition:
    """A table read through the `SQLResource` under `sql_resource_key`.

    With `cursor_column` (a column whose values only grow: an auto-increment key or an insert
    timestamp) the asset has one dynamic partition per range of rows `(low, high]` of that
    column, fixed when `new_rows_sensor` adds it, so a re-materialization reads the same rows.
    Without it, the asset reads the whole table.

    >>> sql_source("orders", "orders", cursor_column="id").partitions_def.name
    'orders__rows'
    """
    from ds_assets.formats import sql

    asset_options = split_options(options, "sql_source")
    arguments = {"table": table, "schema": schema, "columns": list(columns) if columns else None,
                 "cursor_column": cursor_column}  # fmt: skip
    description = asset_options.pop("description", None) or describe("read table", arguments)
    metadata = {
        **asset_options.pop("metadata", {}),
        SOURCE_METADATA_KEY: {
            "kind": "sql",
            "table": table,
            "schema": schema,
            "cursor_column": cursor_column,
        },  # fmt: skip
    }
    if cursor_column is not None:
        if "partitions_def" in asset_options:
            raise DagsterInvalidDefinitionError(
                f"{name}: a SQL source with a cursor_column is partitioned by row ranges; "
                "partitions_def is not an option"
            )
        asset_options["partitions_def"] = DynamicPartitionsDefinition(
            name=_partitions_name(name, options, "rows")
        )
        asset_options["backfill_policy"] = BackfillPolicy.single_run()

    def read(engine, bounds: tuple[Any, Any] | None) -> Dataset:
        between = (cursor_column, *bounds) if bounds else None
        return sql.from_table(
            engine, table, columns=list(columns) if columns else None, schema=schema,
            between=between, order_by=cursor_column, features=features,
        )  # fmt: skip

    @asset(
        name=name,
        required_resource_keys={sql_resource_key},
        description=description,
        metadata=metadata,
        code_version=code_version("sql_source", {**arguments, **_features_version(features)}),
        **asset_options,
    )
    def _source(context: AssetExecutionContext):
        engine = getattr(context.resources, sql_resource_key).get_engine()
        if cursor_column is None:
            return read(engine, None)
        values = {}
        for key in context.partition_keys:
            context.log.info(f"reading rows {cursor_column} in {key} of {table}")
            values[key] = read(engine, parse_range_key(key))
        return values

    return _source
