"""The Arrow layout store: `datasets.save_to_disk`'s layout, written atomically and streaming.

No Dagster here: usable from a notebook with nothing but `datasets`.

>>> import tempfile
>>> from datasets import Dataset
>>> from ds_assets.storage import LocalStore
>>> store = LocalStore(tempfile.mkdtemp())
>>> store.save(("demo",), Dataset.from_dict({"x": [1, 2, 3]})).manifest.num_shards
1
"""

from ds_assets.storage.base import DatasetStore, NotStoredError
from ds_assets.storage.layout import (
    DATASET,
    DATASET_DICT,
    ITERABLE_DATASET,
    ITERABLE_DATASET_DICT,
    Manifest,
)
from ds_assets.storage.local import LocalStore
from ds_assets.storage.reader import LayoutError
from ds_assets.storage.s3_errors import S3AccessError, S3BucketNotFoundError
from ds_assets.storage.save import SaveResult

__all__ = [
    "DATASET",
    "DATASET_DICT",
    "ITERABLE_DATASET",
    "ITERABLE_DATASET_DICT",
    "DatasetStore",
    "LayoutError",
    "LocalStore",
    "Manifest",
    "NotStoredError",
    "S3AccessError",
    "S3BucketNotFoundError",
    "SaveResult",
]
