"""The memoizing metric engine (seed 003)."""
