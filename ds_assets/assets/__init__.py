"""Asset factories: every split and every transform of a dataset is its own Dagster asset."""

from ds_assets.assets.combine import concatenate_asset, interleave_asset
from ds_assets.assets.indexes import (
    elasticsearch_index_asset,
    faiss_index_asset,
    fulltext_index_asset,
    qdrant_index_asset,
)
from ds_assets.assets.sources import (
    file_source,
    hdf5_source,
    sql_source,
    webdataset_source,
    xml_source,
)
from ds_assets.assets.splits import split_assets, split_dataset
from ds_assets.assets.transforms import (
    DatasetOpError,
    filter_asset,
    lazy_transform_asset,
    map_asset,
    repeat_asset,
)

__all__ = [
    "DatasetOpError",
    "concatenate_asset",
    "elasticsearch_index_asset",
    "faiss_index_asset",
    "file_source",
    "filter_asset",
    "fulltext_index_asset",
    "hdf5_source",
    "interleave_asset",
    "lazy_transform_asset",
    "map_asset",
    "qdrant_index_asset",
    "repeat_asset",
    "split_assets",
    "split_dataset",
    "sql_source",
    "webdataset_source",
    "xml_source",
]
