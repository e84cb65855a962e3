"""Reading an AC YAML file: YAML syntax, duplicate keys, shape (Pydantic), then meaning (validate)."""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from metric_platform.errors import ConfigError, ConfigIssue
from metric_platform.semantics.models import ACModel
from metric_platform.semantics.spec import AnalyticalContext
from metric_platform.semantics.validate import build_ac


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that rejects duplicate mapping keys (PyYAML silently keeps the last one)."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, Hashable):
            mark = key_node.start_mark
            msg = f"a mapping key must be a plain value, not {type(key).__name__} (line {mark.line + 1})"
            raise yaml.constructor.ConstructorError(None, None, msg, mark)
        if key in seen:
            mark = key_node.start_mark
            msg = (
                f"duplicate key {key!r} (line {mark.line + 1}); first at line {seen[key].start_mark.line + 1}"
            )
            raise yaml.constructor.ConstructorError(None, None, msg, mark)
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)

# YAML 1.1 reads `on`, `off`, `yes` and `no` as booleans, which turns `joins: [{on: store}]` into a
# key `True`. Keep only YAML 1.2's true/false.
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_ac_yaml(text: str, *, file: Path) -> ACModel:
    name = str(file)
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            [ConfigIssue(name, where, f"invalid YAML: {problem}", "fix the YAML syntax")]
        ) from None
    if not isinstance(data, dict):
        got = "an empty file" if data is None else type(data).__name__
        raise ConfigError(
            [
                ConfigIssue(
                    name,
                    "",
                    f"expected a mapping at the top level, got {got}",
                    "start from data/acs/retail.yaml",
                )
            ]
        )
    try:
        return ACModel.model_validate(data)
    except ValidationError as exc:
        issues = [
            ConfigIssue(name, _loc(tuple(err["loc"])), err["msg"], _hint(err["type"])) for err in exc.errors()
        ]
        raise ConfigError(issues) from None


_HINTS = {
    "missing": "add the key",
    "unknown_key": "remove or rename the key",
    "dict_type": "write a mapping (key: value lines), not a list or a scalar",
    "list_type": "write a list ([a, b] or lines starting with '- ')",
    "tuple_type": "write a pair [finer, coarser]",
    "string_type": "write a text value",
    "int_type": "write a whole number",
    "int_parsing": "write a whole number",
    "int_from_float": "write a whole number",
    "bool_type": "write true or false",
    "bool_parsing": "write true or false",
    "greater_than_equal": "use a larger number",
}


def _hint(error_type: str) -> str:
    if error_type.startswith(("date_", "datetime_")):
        return "write dates as YYYY-MM-DD and timestamps as YYYY-MM-DD HH:MM:SS"
    return _HINTS.get(error_type, "see data/acs/retail.yaml and the README for the expected shape")


def load_ac(
    path: Path | str,
    *,
    source_root: Path | None = None,
    source_path: Path | None = None,
    source_override: Mapping[str, str] | None = None,
) -> AnalyticalContext:
    """Load and validate an AC file.

    ``source_root`` replaces the AC file's directory as the base of relative source paths;
    ``source_path`` replaces a Parquet or SQLite source's path outright (the main job points the
    sample AC at freshly generated data this way, leaving the committed sample untouched).
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        issue = ConfigIssue(
            str(file), f"byte {exc.start}", "the file is not UTF-8 text", "save the file as UTF-8"
        )
        raise ConfigError([issue]) from None
    except OSError as exc:
        raise ConfigError(
            [ConfigIssue(str(file), "", f"cannot read the file: {exc.strerror}", "check the path")]
        ) from None
    model = parse_ac_yaml(text, file=file)
    if source_path is not None and model.source.path is not None:
        model = model.model_copy(
            update={"source": model.source.model_copy(update={"path": str(Path(source_path).resolve())})}
        )
    if source_override:  # the CLI's --backend/--source/--url-env: another copy of the same data
        model = model.model_copy(update={"source": model.source.model_copy(update=dict(source_override))})
    return build_ac(model, file=file.resolve(), source_root=source_root)
