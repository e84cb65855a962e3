"""Comparing engine answers with oracle answers."""

from __future__ import annotations

import polars as pl
from polars.testing import assert_frame_equal


def assert_same_rows(actual: pl.DataFrame, expected: pl.DataFrame, *, context: str = "") -> None:
    """Equal as sets of rows (a serve has no row order): same columns, dtypes, values and NULLs;
    floats within a relative 1e-9 (engines sum in different orders)."""
    keys = list(actual.columns)
    ordered_actual = actual.sort(keys, nulls_last=True)
    ordered_expected = expected.sort(keys, nulls_last=True)
    assert_same_frame(ordered_actual, ordered_expected, context=context)


def assert_same_frame(actual: pl.DataFrame, expected: pl.DataFrame, *, context: str = "") -> None:
    """Equal row by row, in order."""
    try:
        assert_frame_equal(actual, expected, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
    except AssertionError as exc:
        msg = f"{context}\nactual:\n{actual}\nexpected:\n{expected}\n{exc}"
        raise AssertionError(msg) from None
