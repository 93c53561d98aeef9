"""Dagster resources and IO managers of ds-assets.

>>> from resources import DatasetIOManager
>>> DatasetIOManager(base_dir="data").base_dir
'data'
"""

from resources.elasticsearch import ElasticsearchResource
from resources.io_managers import DatasetIOManager, DatasetTypeError, S3DatasetIOManager
from resources.qdrant import QdrantResource
from resources.sql import SQLResource

__all__ = [
    "DatasetIOManager",
    "DatasetTypeError",
    "ElasticsearchResource",
    "QdrantResource",
    "S3DatasetIOManager",
    "SQLResource",
]
