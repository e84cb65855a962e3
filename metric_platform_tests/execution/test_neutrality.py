"""AC-5: the scaffold holds no metric logic and no metric reference (seed 000 §2, §8).

Read from the source, not asserted by hand: every module under ``metric_platform/execution``
is parsed for its imports, searched for the name of every metric family any AC under
``data/acs`` declares, and imported in a fresh interpreter to see what it pulls in.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import yaml

import metric_platform.execution

SCAFFOLD = Path(metric_platform.execution.__file__).resolve().parent
ACS = Path(__file__).resolve().parents[2] / "data" / "acs"
# The layers the scaffold must stay apart from (imports point from defs down to execution, and
# execution never reaches into the engine, the semantic model, a backend, or Dagster).
FORBIDDEN = ("metric_platform.engine", "metric_platform.semantics", "metric_platform.backends", "dagster")


def _sources() -> dict[Path, str]:
    files = sorted(SCAFFOLD.rglob("*.py"))
    assert len(files) >= 8, f"expected the scaffold's modules under {SCAFFOLD}"
    return {path: path.read_text(encoding="utf-8") for path in files}


def _imports(source: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _family_names() -> set[str]:
    names: set[str] = set()
    for path in sorted(ACS.glob("*.yaml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        names.update(str(family["name"]) for family in document.get("metric_families", []))
    assert names, f"no metric family found in {ACS}: the check would pass vacuously"
    return names


def _is_forbidden(module: str) -> bool:
    return any(module == layer or module.startswith(f"{layer}.") for layer in FORBIDDEN)


def test_the_scaffold_imports_no_engine_semantics_backend_or_dagster() -> None:
    offending = {
        path.name: sorted(m for m in _imports(source) if _is_forbidden(m))
        for path, source in _sources().items()
    }
    assert {name: mods for name, mods in offending.items() if mods} == {}


def _family_mentions(sources: dict[str, str], families: set[str]) -> dict[str, str]:
    """``{"file:line": name}`` for every whole-word, case-insensitive mention of a family."""
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, families))) + r")\b", re.IGNORECASE)
    return {
        f"{name}:{line_no}": match.group(0)
        for name, source in sources.items()
        for line_no, line in enumerate(source.splitlines(), 1)
        if (match := pattern.search(line))
    }


def test_the_scaffold_names_no_metric_family() -> None:
    sources = {path.name: source for path, source in _sources().items()}
    assert _family_mentions(sources, _family_names()) == {}


def test_importing_the_scaffold_loads_none_of_those_layers() -> None:
    """Transitively too: a module the scaffold imports (the ledger, errors) must not pull them in."""
    probe = (
        "import sys, metric_platform.execution\n"
        f"layers = {FORBIDDEN!r}\n"
        "print('\\n'.join(m for m in sys.modules if any(m == l or m.startswith(l + '.') for l in layers)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == []


def test_the_checks_would_catch_a_violation() -> None:
    """The detectors themselves: a module that imports the engine and names a family is flagged."""
    bad = "from metric_platform.engine.engine import MetricEngine\nimport dagster as dg\nx = 'Revenue'\n"
    assert sorted(m for m in _imports(bad) if _is_forbidden(m)) == [
        "dagster",
        "metric_platform.engine.engine",
        "metric_platform.engine.engine.MetricEngine",
    ]
    assert _family_mentions({"bad.py": bad}, _family_names()) == {"bad.py:3": "Revenue"}
    assert _family_mentions({"ok.py": "revenues_of = 1  # not a whole word"}, {"revenue"}) == {}
