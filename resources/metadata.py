"""Materialization metadata for the Dagster UI, from what the store wrote."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
from dagster import MetadataValue, TableColumn, TableSchema
from datasets import ClassLabel, Features, LargeList, List, Value

from ds_assets.storage import DatasetStore, Manifest, SaveResult

PREVIEW_CELL_CHARS = 60


def feature_type(feature: Any) -> str:
    """A short type name for one feature, as shown in the UI's column schema.

    >>> feature_type(List(Value("int32")))
    'list<int32>'
    """
    if isinstance(feature, Value):
        return feature.dtype
    if isinstance(feature, ClassLabel):
        return f"ClassLabel[{feature.num_classes}]"
    if isinstance(feature, (List, LargeList)):
        return f"list<{feature_type(feature.feature)}>"
    if isinstance(feature, dict):
        inner = ", ".join(f"{name}: {feature_type(f)}" for name, f in feature.items())
        return f"struct<{inner}>"
    if isinstance(feature, (list, tuple)) and feature:
        return f"list<{feature_type(feature[0])}>"
    shape = getattr(feature, "shape", None)
    dtype = getattr(feature, "dtype", None)
    name = type(feature).__name__
    return f"{name}{list(shape)}<{dtype}>" if shape is not None else name


def column_schema(features: Features) -> TableSchema:
    """A Dagster `TableSchema` from `datasets` Features (class names in the description)."""
    columns = []
    for name, feature in features.items():
        description = None
        if isinstance(feature, ClassLabel):
            description = "classes: " + ", ".join(feature.names[:50])
        columns.append(TableColumn(name=name, type=feature_type(feature), description=description))
    return TableSchema(columns=columns)


def preview_markdown(table: pa.Table) -> str:
    """A markdown table of `table`'s rows: long values cut, binary values summarized."""
    if table.num_columns == 0:
        return "(no columns)"
    header = "| " + " | ".join(table.column_names) + " |"
    rule = "|" + "---|" * table.num_columns
    rows = []
    columns = [table.column(i) for i in range(table.num_columns)]
    for index in range(table.num_rows):
        cells = [_cell(column[index].as_py()) for column in columns]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join([header, rule, *rows]) if rows else header + "\n" + rule


def _cell(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        text = f"<{len(value)} bytes>"
    elif isinstance(value, dict) and isinstance(value.get("bytes"), (bytes, bytearray)):
        text = (
            f"<{len(value['bytes'])} bytes{', ' + str(value['path']) if value.get('path') else ''}>"
        )
    else:
        text = (
            json.dumps(value, default=str, ensure_ascii=False)
            if not isinstance(value, str)
            else value
        )
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= PREVIEW_CELL_CHARS else text[: PREVIEW_CELL_CHARS - 1] + "…"


def output_metadata(results: dict[str, SaveResult], location: str) -> dict[str, Any]:
    """Metadata for one output; `results` has one entry, or one per partition of a range."""
    first = next(iter(results.values()))
    manifests = [r.manifest for r in results.values()]
    metadata: dict[str, Any] = {
        "dagster/row_count": sum(m.num_rows for m in manifests),
        "dagster/column_schema": column_schema(first.features),
        "dagster/uri": MetadataValue.path(location) if "://" not in location else location,
        "num_bytes": sum(m.num_bytes for m in manifests),
        "num_shards": sum(m.num_shards for m in manifests),
        "kind": first.manifest.kind,
        "features": MetadataValue.json(first.features.to_dict()),
        "preview": MetadataValue.md(preview_markdown(first.preview)),
    }
    if len(results) == 1:
        metadata["version"] = first.manifest.version
    else:
        metadata["partitions"] = MetadataValue.json(
            {
                key: {"rows": r.manifest.num_rows, "version": r.manifest.version}
                for key, r in results.items()
            }
        )
    if first.manifest.splits:
        metadata["splits"] = MetadataValue.json(first.manifest.splits)
    return metadata


def index_metadata(manifest: Manifest, sample: dict[str, Any], location: str) -> dict[str, Any]:
    """Metadata of a stored search index: what it is, what it indexes, one sample query."""
    info = dict(manifest.index or {})
    links = DatasetStore.bundle_links(manifest)
    metadata: dict[str, Any] = {
        "dagster/uri": MetadataValue.path(location) if "://" not in location else location,
        "engine": info.pop("engine", "?"),
        "count": info.get("count", manifest.num_rows),
        "dagster/row_count": info.pop("count", manifest.num_rows),
        "dataset": ", ".join(link["path"] for link in links),
        "dataset_version": ", ".join(link["version"] for link in links),
        "version": manifest.version,
        "num_bytes": manifest.num_bytes,
    }
    if "physical_name" in info:
        info["physical"] = info.pop("physical_name")
    for name in ("dimension", "metric", "distance", "physical", "alias", "build_seconds"):
        if info.get(name) is not None:
            metadata[name] = info.pop(name)
    metadata["index"] = MetadataValue.json({k: v for k, v in info.items() if v is not None})
    if sample.get("hits"):
        lines = [f"query: `{sample['query']}`", "", "| rank | score | row | preview |",
                 "|---|---|---|---|"]  # fmt: skip
        for rank, hit in enumerate(sample["hits"], 1):
            preview = hit["preview"].replace("|", "\\|")
            lines.append(f"| {rank} | {hit['score']:.4g} | {hit['row']} | {preview} |")
        metadata["sample_query"] = MetadataValue.md("\n".join(lines))
    return metadata
