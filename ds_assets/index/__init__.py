"""Search indexes over a `datasets.Dataset` column: FAISS, Qdrant, Elasticsearch and an embedded
full-text index (tantivy), all with the search API of `Dataset.search` (see `base`).

No Dagster import: build and query them from a notebook.
"""
