"""Readers of source formats (XML, SQL, WebDataset, HDF5): Arrow record batches with `datasets`
Features, returned as a `Dataset` (memory-mapped) or, with `streaming=True`, an `IterableDataset`.

No Dagster import: every reader works from a notebook with nothing but `datasets`.
"""
