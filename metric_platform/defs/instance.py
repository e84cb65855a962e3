"""The Dagster instances: the embedded one (top-level ``dagster.yaml``) and the PostgreSQL one
(``deploy/postgres/dagster.yaml``), the engine's pool, and the home a run history lives in.

A Dagster home is a directory holding ``dagster.yaml``; the instance keeps its runs there (or, for
PostgreSQL, in the database the file names). The files in the repository are templates:
:func:`prepare_dagster_home` copies one into a home, so the main job and ``dagster dev`` (with
``DAGSTER_HOME`` set to the same directory) see the same runs, and an edited template reaches the
home on the next start.

The embedded instance keeps one event-log database for all runs (measured faster than Dagster's
database per run, see ``dagster.yaml``), at ``$DAGSTER_HOME/event_log.db``: Dagster resolves that
path from the environment, not from the instance's directory, so :func:`open_instance` makes sure
``DAGSTER_HOME`` names the home being opened.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from metric_platform.errors import ConfigError, ConfigIssue

# The pool every engine-backed asset declares (``dg.asset(pool=POOL)``). Its limit is the templates'
# ``concurrency: pools: default_limit`` (2): at most that many engine steps hold a slot at once,
# across all runs; a further step waits for a slot. ``dagster instance concurrency set
# metric_engine N`` overrides it on one instance.
POOL = "metric_engine"

_REPO_ROOT = Path(__file__).resolve().parents[2]
# The templates ship in the repository beside the code location (workspace.yaml), not in the package.
EMBEDDED_TEMPLATE = _REPO_ROOT / "dagster.yaml"
POSTGRES_TEMPLATE = _REPO_ROOT / "deploy" / "postgres" / "dagster.yaml"
# The environment variable the PostgreSQL template reads its database URL from.
PG_URL_ENV = "METRIC_PLATFORM_DAGSTER_PG_URL"
DAGSTER_HOME_ENV = "DAGSTER_HOME"
CONFIG_FILENAME = "dagster.yaml"
# dagster-postgres needs psycopg2 (see deploy/postgres/dagster.yaml for why not psycopg 3).
_PG_DRIVER = "postgresql+psycopg2"
_PG_URL_EXAMPLE = "e.g. postgresql://user@host:5432/dagster"


def instance_config(template: Path) -> dict[str, Any]:
    """The parsed instance configuration in ``template``, checked against Dagster's schema.

    Environment references (``env: DAGSTER_HOME``) are left as written: checking a template must not
    need the environment it will run in. Raises :class:`ConfigError` naming the file when it is
    missing, not YAML, or not a valid Dagster instance configuration.
    """
    name = str(template)
    if not template.is_file():
        hint = f"use {EMBEDDED_TEMPLATE} (embedded) or {POSTGRES_TEMPLATE} (PostgreSQL)"
        raise ConfigError([ConfigIssue(name, "", "no such file", hint)])
    try:
        parsed = yaml.safe_load(template.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue(name, "", f"not valid YAML: {exc}")]) from exc
    if not isinstance(parsed, dict):
        raise ConfigError([ConfigIssue(name, "", "the top level must be a mapping of instance settings")])
    try:
        # Dagster's own loader, so that a misspelt key fails here, naming the file, rather than
        # at the first run. Its module is private; the function has kept its shape since 1.0.
        dagster_instance_config(str(template.parent), config_filename=template.name)
    except DagsterInvalidConfigError as exc:
        hint = "the keys are those of dagster/_core/instance/config.py in the installed dagster"
        raise ConfigError([ConfigIssue(name, "", str(exc), hint)]) from exc
    return parsed


def prepare_dagster_home(home: Path, template: Path) -> Path:
    """Create ``home`` and give it ``template`` as its ``dagster.yaml`` when absent or different.

    Returns the home as an absolute path (Dagster refuses a relative ``DAGSTER_HOME``). The copy is
    written beside the target and renamed over it, so a process opening the home never reads half
    a file. Runs already stored in the home are untouched.
    """
    instance_config(template)  # a broken template fails here, before it replaces a working one
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    target = home / CONFIG_FILENAME
    content = template.read_bytes()
    if not target.is_file() or target.read_bytes() != content:
        partial = home / f".{CONFIG_FILENAME}.tmp"
        partial.write_bytes(content)
        partial.replace(target)
    return home


@contextmanager
def open_instance(home: Path) -> Iterator[dg.DagsterInstance]:
    """The Dagster instance of ``home`` (prepared by :func:`prepare_dagster_home`), disposed on exit.

    The embedded template resolves its event-log directory from ``DAGSTER_HOME``, and run workers
    and the daemon inherit it, so ``DAGSTER_HOME`` must name this home: unset, it is set for the
    duration; set to another directory, this raises rather than write this home's events there.
    """
    home = home.resolve()
    if not (home / CONFIG_FILENAME).is_file():
        hint = "call prepare_dagster_home(home, EMBEDDED_TEMPLATE) first"
        raise ConfigError([ConfigIssue(str(home / CONFIG_FILENAME), "", "no such file", hint)])
    previous = os.environ.get(DAGSTER_HOME_ENV)
    if previous is not None and Path(previous).resolve() != home:
        issue = ConfigIssue(
            DAGSTER_HOME_ENV,
            "",
            f"is {previous}, but the instance being opened is {home}",
            f"unset {DAGSTER_HOME_ENV} or set it to {home}",
        )
        raise ConfigError([issue])
    os.environ[DAGSTER_HOME_ENV] = str(home)
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            yield instance
    finally:
        if previous is None:
            os.environ.pop(DAGSTER_HOME_ENV, None)


def dagster_pg_url(url: str) -> str:
    """``url`` (any PostgreSQL SQLAlchemy URL, e.g. the platform's psycopg 3 one) with the psycopg2
    driver dagster-postgres needs: the value to give :data:`PG_URL_ENV`."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        msg = "is not a database URL (the value is not repeated here: it may hold a password)"
        raise ConfigError([ConfigIssue(PG_URL_ENV, "", msg, _PG_URL_EXAMPLE)]) from exc
    if parsed.get_backend_name() != "postgresql":
        msg = f"names a {parsed.get_backend_name()} database, but the Dagster instance needs PostgreSQL"
        raise ConfigError([ConfigIssue(PG_URL_ENV, "", msg, _PG_URL_EXAMPLE)])
    return parsed.set(drivername=_PG_DRIVER).render_as_string(hide_password=False)
