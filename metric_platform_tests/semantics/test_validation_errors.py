"""Every way an AC can be wrong is reported with the file, the YAML path and a fix hint.

Each case names a fixture ``fixtures/invalid_<name>.yaml``: a copy of ``valid_minimal.yaml`` with one
mistake. The test loads it and looks for the issue that mistake must produce.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from metric_platform.errors import ConfigError, ConfigIssue
from metric_platform.semantics.loader import load_ac, parse_ac_yaml

FIXTURES = Path(__file__).parent / "fixtures"
VALID = FIXTURES / "valid_minimal.yaml"


def fixture(name: str) -> Path:
    return FIXTURES / f"invalid_{name}.yaml"


def line_of(name: str, text: str) -> int:
    """The 1-based line of ``text`` in a fixture, so YAML-syntax cases do not hard-code numbers."""
    lines = fixture(name).read_text(encoding="utf-8").splitlines()
    return [i for i, line in enumerate(lines, start=1) if line == text][-1]


def load_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_ac(path)
    return info.value


@dataclass(frozen=True)
class Case:
    fixture: str
    path: str  # the YAML path of the issue; for YAML syntax errors, "line N" (a column may follow)
    message: str  # a fragment of the issue's message
    hint: str = ""  # a fragment of the hint, where the hint must say something specific

    def matches(self, issue: ConfigIssue) -> bool:
        at = issue.path == self.path or issue.path.startswith(f"{self.path}, ")
        return at and self.message in issue.message


MF0 = "metric_families[0]"
CASES = [
    Case("fd_cycle", "fd_edges", "cycle: store -> region -> store", "remove one edge"),
    # unknown schemas, wherever a schema is named
    Case(
        "unknown_schema_family_root",
        f"{MF0}.family_root.schema",
        "unknown schema 'sale'",
        "did you mean 'sales'",
    ),
    Case(
        "unknown_schema_dimension",
        "dimensions[0].columns.visit",
        "unknown schema 'visit'",
        "did you mean 'visits'",
    ),
    Case("unknown_schema_join", "joins[0].to", "unknown schema 'store'", "did you mean 'stores'"),
    Case("unknown_schema_filter", "filter[0].schema", "unknown schema 'sale'", "did you mean 'sales'"),
    # unknown columns
    Case(
        "unknown_column_family_root",
        f"{MF0}.family_root.column",
        "unknown column 'amout'",
        "did you mean 'amount'",
    ),
    Case(
        "unknown_column_dimension",
        "dimensions[1].columns.stores",
        "unknown column 'regoin'",
        "did you mean 'region'",
    ),
    Case("unknown_column_filter", "filter[0].column", "unknown column 'store'", "did you mean 'store_id'"),
    # unknown dimensions, wherever a dimension is named
    Case(
        "unknown_dimension_base_grain",
        "metric_families[1].base_grain[0]",
        "unknown dimension 'shop'",
        "known: day",
    ),
    Case(
        "unknown_dimension_cache_hint",
        f"{MF0}.cache_hint.materialize_at[1][1]",
        "unknown dimension 'mnth'",
        "did you mean 'month'",
    ),
    Case("unknown_dimension_fd_edge", "fd_edges[0]", "unknown dimension 'regio'", "did you mean 'region'"),
    Case("unknown_dimension_join_on", "joins[0].on", "unknown dimension 'shop'", "known: day"),
    Case(
        "dimension_not_reachable_from_root",
        "metric_families[3].base_grain[0]",
        "'region' cannot be reached from schema 'visits'",
        "declare a join",
    ),
    # grains and the FD-DAG
    Case(
        "cache_hint_unreachable",
        f"{MF0}.cache_hint.materialize_at[1]",
        "[region, month] is not reachable in the FD-DAG",
        "[day, month]",
    ),
    Case(
        "base_grain_without_day",
        "metric_families[1].base_grain",
        "lacks the day dimension 'day'",
        "add 'day'",
    ),
    Case("fd_week_to_month", "fd_edges[3]", "a week can straddle two months", "remove the edge"),
    Case("fd_time_to_non_time", "fd_edges[3]", "mixes a time and a non-time dimension"),
    Case(
        "avg_hint_coarser_than_base",
        f"{MF0}.cache_hint.materialize_at[1]",
        "AVG is not partition-invariant",
        "base_grain",
    ),
    # reducers
    Case(
        "reducer_sum_on_string",
        "metric_families[2].ip_reducers[0].operator",
        "SUM cannot reduce sales.customer_id, a string column",
        "float, integer",
    ),
    Case(
        "reducer_bool_or_on_float",
        f"{MF0}.ip_reducers[0].operator",
        "BOOL_OR cannot reduce sales.amount, a float column",
        "boolean",
    ),
    Case("two_ip_reducers", f"{MF0}.ip_reducers", "2 ip_reducers declared", "one family per reducer"),
    Case("unknown_operator", f"{MF0}.ip_reducers[0].operator", "unknown operator 'SUMM'", "SUM"),
    Case(
        "unknown_a_block", f"{MF0}.ip_reducers[0].a_block[0]", "unknown A-block 'tme'", "did you mean 'time'"
    ),
    # duplicate names and unsafe identifiers
    Case("duplicate_schema", "schemas[3].name", "duplicate schema name 'stores'"),
    Case("duplicate_dimension", "dimensions[5].name", "duplicate dimension name 'week'"),
    Case("duplicate_family", "metric_families[3].name", "duplicate metric family 'revenue'"),
    Case("unsafe_family_name", f"{MF0}.name", "'revenue-usd' is not a safe identifier", "underscores"),
    Case(
        "unsafe_column_name",
        "schemas[2].columns.1st",
        "'1st' is not a safe identifier",
        "not starting with a digit",
    ),
    Case(
        "unsafe_dimension_name",
        "dimensions[5].name",
        "'1st' is not a safe identifier",
        "not starting with a digit",
    ),
    # unknown keys (Pydantic shape check) with a did-you-mean
    Case("unknown_key_cache_hints", MF0, "unknown key 'cache_hints' (did you mean 'cache_hint'?)", "rename"),
    Case(
        "unknown_key_materialise_at",
        f"{MF0}.cache_hint",
        "unknown key 'materialise_at' (did you mean 'materialize_at'?)",
        "rename",
    ),
    # missing values
    Case(
        "unknown_missing_values",
        "metric_families[2].missing_values",
        "unknown treatment 'ignore'",
        "propagate",
    ),
    Case(
        "impute_string_on_float",
        f"{MF0}.missing_values.impute",
        "'zero' does not fit a float column",
        "float",
    ),
    Case("impute_bool_on_float", f"{MF0}.missing_values.impute", "True does not fit a float column", "float"),
    # source and identity
    Case("postgres_inline_url", "source.url", "connection URL is written inline", "url_env"),
    Case("postgres_missing_url_env", "source.url_env", "a postgres source needs url_env"),
    Case("project_id_not_uuid", "project_id", "'shop-42' is not a UUID", "8-4-4-4-12"),
    # YAML syntax
    Case(
        "malformed_indentation",
        f"line {line_of('malformed_indentation', '      table: stores')}",
        "invalid YAML",
        "YAML syntax",
    ),
    Case(
        "duplicate_yaml_key",
        f"line {line_of('duplicate_yaml_key', '    table: shops')}",
        "duplicate key 'table'",
        "YAML syntax",
    ),
    Case("empty", "", "got an empty file", "retail.yaml"),
]


def check(case: Case) -> None:
    file = fixture(case.fixture)
    err = load_error(file)
    assert file.name in str(err)
    found = [issue for issue in err.issues if case.matches(issue)]
    assert found, f"expected an issue at {case.path!r} saying {case.message!r}; got:\n{err}"
    for issue in found:
        assert issue.file.endswith(file.name)
        assert issue.hint, f"{issue} has no fix hint"
        assert case.hint in issue.hint
        assert str(issue) in str(err)  # the rendered error shows the path, message and hint


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.fixture)
def test_each_mistake_is_reported_with_file_path_message_and_hint(case: Case) -> None:
    check(case)


def test_yaml_syntax_errors_name_the_line_in_the_message() -> None:
    line = line_of("malformed_indentation", "      table: stores")
    assert f"line {line}" in str(load_error(fixture("malformed_indentation")))
    first = line_of("duplicate_yaml_key", "    table: stores")
    assert f"first at line {first}" in str(load_error(fixture("duplicate_yaml_key")))


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_ac.yaml"
    err = load_error(missing)
    assert "no_such_ac.yaml" in str(err)
    assert [(i.path, i.hint) for i in err.issues] == [("", "check the path")]
    assert "cannot read the file" in err.issues[0].message


def test_a_top_level_list_is_rejected() -> None:
    with pytest.raises(ConfigError, match="expected a mapping at the top level, got list"):
        parse_ac_yaml("- name: shop\n", file=Path("list.yaml"))


def test_every_issue_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    text = VALID.read_text(encoding="utf-8")
    text = text.replace("project_id: 5f0c6a43-8f5e-4c1b-9a7e-2d4b1c9e7a10", "project_id: nope")
    text = text.replace("{schema: sales, column: store_id, op: ne", "{schema: sale, column: store_id, op: ne")
    file = tmp_path / "two_mistakes.yaml"
    file.write_text(text, encoding="utf-8")
    assert {i.path for i in load_error(file).issues} == {"project_id", "filter[0].schema"}


def test_the_valid_fixture_loads_so_each_failure_is_the_one_mistake() -> None:
    ac = load_ac(VALID)
    assert set(ac.families) == {"revenue", "any_refund", "customers", "footfall"}


def test_each_fixture_differs_from_the_valid_one_by_a_few_lines() -> None:
    valid = VALID.read_text(encoding="utf-8").splitlines()[2:]
    for file in sorted(FIXTURES.glob("invalid_*.yaml")):
        if file.stat().st_size == 0:
            continue
        lines = file.read_text(encoding="utf-8").splitlines()[1:]
        changed = [d for d in difflib.ndiff(valid, lines) if d[:1] in "+-"]
        assert 0 < len(changed) <= 6, f"{file.name} should show one mistake, differs by:\n" + "\n".join(
            changed
        )


def test_every_fixture_is_used_by_a_case() -> None:
    used = {c.fixture for c in CASES} | {c.fixture for c in FORMERLY_MISSED}
    on_disk = {f.stem.removeprefix("invalid_") for f in FIXTURES.glob("invalid_*.yaml")}
    assert on_disk == used


# -- `on:` in joins (YAML 1.1 reads a bare `on` as the boolean True) ---------------------------------


def test_on_keys_in_joins_stay_strings() -> None:
    model = parse_ac_yaml(VALID.read_text(encoding="utf-8"), file=VALID)
    assert [(j.from_, j.to, j.on) for j in model.joins] == [
        ("sales", "stores", "store"),
        ("visits", "stores", "store"),
    ]
    assert load_ac(VALID).joins[0].on == "store"


def test_the_loader_does_not_change_pyyaml_for_everyone_else() -> None:
    assert yaml.safe_load("on: yes") == {True: True}


# -- mistakes the first validator missed (found by these tests, now fixed) ---------------------------


FORMERLY_MISSED = [
    Case("url_env_holds_url", "source.url_env", "URL", "environment variable"),
    Case("table_escapes_source_dir", "schemas[1].table", "not a safe identifier"),
    Case("hold_off_days_not_int", "stability.hold_off_days", "integer"),
    Case("columns_as_list", "schemas[1].columns", "dictionary"),
    Case("impute_extra_key", f"{MF0}.missing_values", "unknown key 'when'", "rename"),
    Case(
        "unhashable_yaml_key",
        f"line {line_of('unhashable_yaml_key', '? [store, region]')}",
        "invalid YAML",
        "YAML syntax",
    ),
    Case("duplicate_family_first_invalid", "metric_families[3].name", "duplicate metric family 'revenue'"),
]


@pytest.mark.parametrize("case", FORMERLY_MISSED, ids=lambda case: case.fixture)
def test_formerly_missed_mistakes_are_reported(case: Case) -> None:
    check(case)


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    file = tmp_path / "latin1.yaml"
    file.write_bytes(VALID.read_bytes().replace(b"tenant_id: acme", b"tenant_id: acm\xe9"))
    err = load_error(file)
    assert err.issues[0].hint
