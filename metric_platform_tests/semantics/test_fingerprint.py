"""Family fingerprints change exactly when something that determines the family's values changes.

Variants of ``fixtures/valid_minimal.yaml`` are written to a temporary directory and loaded with the
same ``source_root`` as the original, so the source location is identical and only the edit differs.
Its families: revenue, any_refund and customers read ``sales`` (joined to ``stores``); footfall
reads ``visits`` (joined to ``stores``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metric_platform.semantics.fingerprint import schema_fingerprint
from metric_platform.semantics.loader import load_ac

FIXTURES = Path(__file__).parent / "fixtures"
VALID = FIXTURES / "valid_minimal.yaml"
SALES_FAMILIES = {"revenue", "any_refund", "customers"}
ALL_FAMILIES = {*SALES_FAMILIES, "footfall"}


def fingerprints(tmp_path: Path, *edits: tuple[str, str]) -> dict[str, str]:
    text = VALID.read_text(encoding="utf-8")
    for old, new in edits:
        assert text.count(old) == 1, f"edit target {old!r} is not unique in the fixture"
        text = text.replace(old, new)
    file = tmp_path / f"variant_{len(list(tmp_path.iterdir()))}.yaml"
    file.write_text(text, encoding="utf-8")
    ac = load_ac(file, source_root=FIXTURES)
    return {name: family.fingerprint for name, family in ac.families.items()}


def changed(tmp_path: Path, *edits: tuple[str, str]) -> set[str]:
    before, after = fingerprints(tmp_path), fingerprints(tmp_path, *edits)
    assert before.keys() == after.keys()
    return {name for name in before if before[name] != after[name]}


REVENUE_OP = (
    "      - operator: SUM\n        a_block: [time]\n",
    "      - operator: MAX\n        a_block: [time]\n",
)


@pytest.mark.parametrize(
    ("edit", "family"),
    [
        pytest.param(
            ("{schema: sales, column: customer_id}", "{schema: sales, column: store_id}"),
            "customers",
            id="column",
        ),
        pytest.param(REVENUE_OP, "revenue", id="operator"),
        pytest.param(("{impute: 0.0}", "{impute: 1.0}"), "revenue", id="impute-value"),
        pytest.param(
            ("    missing_values: propagate\n", "    missing_values: skip\n"), "customers", id="mvt-kind"
        ),
        pytest.param(
            ("      - operator: BOOL_OR\n", "      - operator: BOOL_AND\n"), "any_refund", id="bool-op"
        ),
    ],
)
def test_changing_one_family_changes_only_its_fingerprint(
    tmp_path: Path, edit: tuple[str, str], family: str
) -> None:
    assert changed(tmp_path, edit) == {family}


def test_a_filter_changes_the_families_that_read_its_schema(tmp_path: Path) -> None:
    assert changed(tmp_path, ("op: ne, value: test}", "op: ne, value: demo}")) == SALES_FAMILIES
    # Both roots join stores, so a filter on stores reaches every family.
    stores_filter = ("filter:\n", "filter:\n  - {schema: stores, column: region, op: ne, value: lab}\n")
    assert changed(tmp_path, stores_filter) == ALL_FAMILIES


def test_a_schema_column_type_change_reaches_its_readers_only(tmp_path: Path) -> None:
    assert changed(tmp_path, ("      visitors: integer\n", "      visitors: float\n")) == {"footfall"}


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(("        - [region, month]\n", ""), id="drop-a-hint"),
        pytest.param(
            ("        - [region, month]\n", "        - [region, month]\n        - [store, week]\n"),
            id="add-a-hint",
        ),
        pytest.param(
            (
                "      - operator: BOOL_OR\n    base_grain: [store, day]\n",
                "      - operator: BOOL_OR\n    base_grain: [region, day]\n",
            ),
            id="base-grain",
        ),
        pytest.param(("    base_grain: [day]\n", "    base_grain: [store, day]\n"), id="base-grain-2"),
    ],
)
def test_cache_hints_and_base_grains_do_not_change_fingerprints(
    tmp_path: Path, edit: tuple[str, str]
) -> None:
    assert changed(tmp_path, edit) == set()


def test_a_different_source_changes_every_fingerprint(tmp_path: Path) -> None:
    assert changed(tmp_path, ("  path: data\n", "  path: other\n")) == ALL_FAMILIES


def test_families_have_distinct_fingerprints(tmp_path: Path) -> None:
    prints = fingerprints(tmp_path)
    assert len(set(prints.values())) == len(prints)


def test_schema_fingerprint_follows_its_own_filter_only() -> None:
    ac = load_ac(VALID)
    assert schema_fingerprint(ac, "sales") != schema_fingerprint(ac, "stores")
    # The sales filter is part of sales' fingerprint; removing it changes sales and nothing else.
    bare = dataclasses.replace(ac, filter=())
    assert schema_fingerprint(bare, "sales") != schema_fingerprint(ac, "sales")
    assert schema_fingerprint(bare, "stores") == schema_fingerprint(ac, "stores")


_CHILD = """
import json, sys
from metric_platform.semantics.loader import load_ac
ac = load_ac(sys.argv[1])
print(json.dumps({name: f.fingerprint for name, f in ac.families.items()}))
"""


def test_fingerprints_are_stable_across_loads_and_processes() -> None:
    first = {name: f.fingerprint for name, f in load_ac(VALID).families.items()}
    again = {name: f.fingerprint for name, f in load_ac(VALID).families.items()}
    assert first == again
    # Another interpreter with another hash seed: nothing may depend on set or dict iteration order.
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(VALID)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    )
    assert json.loads(out.stdout) == first
