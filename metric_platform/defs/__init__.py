"""Everything Dagster: the only package that imports ``dagster`` (ARCHITECTURE.md §4)."""
