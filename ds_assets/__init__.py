"""ds-assets: Dagster assets for Hugging Face `datasets` pipelines.

The factories are imported lazily, so `ds_assets.storage` stays usable without Dagster.

>>> from ds_assets import split_assets, map_asset
"""

import importlib

_FACTORIES = {
    "concatenate_asset": "ds_assets.assets",
    "filter_asset": "ds_assets.assets",
    "interleave_asset": "ds_assets.assets",
    "lazy_transform_asset": "ds_assets.assets",
    "map_asset": "ds_assets.assets",
    "repeat_asset": "ds_assets.assets",
    "split_assets": "ds_assets.assets",
    "DatasetOpError": "ds_assets.assets",
    "file_source": "ds_assets.assets",
    "hdf5_source": "ds_assets.assets",
    "sql_source": "ds_assets.assets",
    "webdataset_source": "ds_assets.assets",
    "xml_source": "ds_assets.assets",
    "elasticsearch_index_asset": "ds_assets.assets",
    "faiss_index_asset": "ds_assets.assets",
    "fulltext_index_asset": "ds_assets.assets",
    "qdrant_index_asset": "ds_assets.assets",
    "new_files_sensor": "ds_assets.sensors",
    "new_rows_sensor": "ds_assets.sensors",
}

__all__ = sorted(_FACTORIES)


def __getattr__(name: str):
    if name in _FACTORIES:
        return getattr(importlib.import_module(_FACTORIES[name]), name)
    raise AttributeError(f"module 'ds_assets' has no attribute {name!r}")
