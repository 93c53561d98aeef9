"""Dataset operations that `datasets` lacks or does slowly; no Dagster import."""
