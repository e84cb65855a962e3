"""Frame expressions: a small, safe expression language compiled to Polars (seed 003 §8.2 step 3).

Users write derived metrics and HAVING predicates on a command line (``--derive roas=revenue/spend``,
``--having "roas > 2 and revenue >= 100"``). The text is parsed with :mod:`ast` (Python syntax, never
``eval``) and an allow-list of node kinds is compiled to a :class:`polars.Expr`:

* literals: numbers, ``'strings'``, ``true``/``false``/``null`` (reserved words in any case; also
  ``True``/``False``/``None``);
* column names (must exist; a did-you-mean is offered otherwise);
* ``+ - * / // %``, unary ``-``/``+``; ``== != < <= > >=`` (chains such as ``1 < x < 3`` allowed);
* ``and``, ``or``, ``not``; parentheses;
* functions ``abs(x)``, ``round(x[, digits])``, ``coalesce(a, ...)``, ``if_null(x, v)``,
  ``nullif(x, v)``, ``is_null(x)``, ``least(...)``, ``greatest(...)``, ``log(x)``, ``ln(x)``, ``sqrt(x)``.

Semantics follow SQL as DuckDB 2.0 implements it (the tests use DuckDB as the oracle):

* NULL propagates through arithmetic, comparisons and functions (except ``coalesce``/``if_null``/
  ``is_null``; ``least``/``greatest`` skip NULL arguments and rank NaN highest); ``and``/``or``/``not``
  use three-valued (Kleene) logic: ``false and null`` is false, ``true or null`` is true.
* ``/`` is true division giving Float64; a zero divisor gives IEEE ``inf``/``-inf``/``NaN`` exactly as
  DuckDB 2.0 does (``1/0`` = inf, ``0/0`` = NaN). Use ``nullif(x, 0)`` to get NULL instead.
  NaN compares equal to NaN and greater than every number, as in DuckDB and Polars.
* ``//`` and ``%`` are SQL integer division and remainder: the quotient truncates toward zero and the
  remainder has the sign of the dividend (``-7 // 2`` = -3, ``-7 % 2`` = -1; not Python's floor). A zero
  divisor gives NULL (DuckDB raises by default and returns NULL with ``error_on_division_by_zero=false``;
  a lazy plan cannot raise mid-query). For floats ``//`` is ``trunc(a / b)`` and ``%`` is
  ``a - b * trunc(a / b)`` (DuckDB's float ``//`` is plain division; its ``%`` is C's exact ``fmod``,
  which ours can differ from in the last bits).
* ``round`` rounds half away from zero (DuckDB's rule, not Polars' default half-to-even);
  ``log`` is base 10 as in SQL (DuckDB, PostgreSQL); ``ln`` is the natural logarithm.
* Known deviations: integer overflow wraps in Polars (DuckDB raises). ``**``, ``in``, ``is``, bit
  operators and conditional expressions are not in the language.

When ``columns`` is a schema (``Mapping[str, pl.DataType]``, e.g. ``lf.collect_schema()``) the
expression is also type-checked (numbers for arithmetic, booleans for ``and``/``or``/``not``,
comparable operands); a Date column may be compared with an ISO date string (``day >= '2026-01-31'``).
"""

from __future__ import annotations

import ast
import datetime as dt
import keyword
import operator
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import reduce
from typing import NoReturn

import polars as pl

from metric_platform.errors import InvalidRequestError, did_you_mean

__all__ = [
    "DerivedMetric",
    "FrameExpression",
    "is_identifier",
    "parse_assignment",
    "parse_expression",
    "parse_predicate",
    "referenced_columns",
]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGNMENT = re.compile(r"\s*([^=\s]*)\s*=(?!=)(.*)", re.DOTALL)
_LITERAL_NAMES: dict[str, bool | None] = {"true": True, "false": False, "null": None}
_MAX_LENGTH = 10_000
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MAX_ROUND_DIGITS = 38


class _Kind(Enum):
    """What a sub-expression yields, as far as type checking needs to know."""

    NUMBER = "a number"
    STRING = "a string"
    BOOLEAN = "true/false"
    TEMPORAL = "a date/time"
    NULL = "null"
    OTHER = "a non-scalar value"
    UNKNOWN = "unknown"  # no schema was given: nothing is checked


_UNCHECKED = (_Kind.NULL, _Kind.UNKNOWN)


def _kind_of(dtype: pl.DataType) -> _Kind:
    if dtype.is_numeric():
        return _Kind.NUMBER
    if dtype == pl.Boolean:
        return _Kind.BOOLEAN
    if dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum):
        return _Kind.STRING
    if dtype.is_temporal():
        return _Kind.TEMPORAL
    return _Kind.NULL if dtype == pl.Null else _Kind.OTHER


@dataclass(frozen=True, eq=False)
class _Typed:
    expr: pl.Expr
    kind: _Kind
    dtype: pl.DataType | None = None  # known for columns only
    string_literal: str | None = None  # kept so that a Date column can be compared with '2026-01-31'


def _trunc_div(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """SQL integer division: truncate toward zero; NULL for a zero divisor (exact for integers)."""
    floor_q = a // b
    truncated = pl.when((floor_q < 0) & (floor_q * b != a)).then(floor_q + 1).otherwise(floor_q)
    return pl.when(b == 0).then(None).otherwise(truncated)


def _extreme(exprs: Sequence[pl.Expr], keep_left: type[ast.cmpop]) -> pl.Expr:
    """SQL least/greatest: NULLs skipped, NaN above every number (DuckDB's order).

    Built from comparisons rather than min/max_horizontal, which skip NaN and, in Polars 1.44, return one
    row for ``least(0, nullif(0, x))``. Halving keeps the expression quadratic, not exponential, in size.
    """
    if len(exprs) == 1:
        return exprs[0]
    middle = len(exprs) // 2
    left, right = _extreme(exprs[:middle], keep_left), _extreme(exprs[middle:], keep_left)
    return pl.when(_apply_comparison(keep_left, left, right) | right.is_null()).then(left).otherwise(right)


_ARITHMETIC: dict[type[ast.operator], tuple[str, Callable[[pl.Expr, pl.Expr], pl.Expr]]] = {
    ast.Add: ("+", operator.add),
    ast.Sub: ("-", operator.sub),
    ast.Mult: ("*", operator.mul),
    ast.Div: ("/", operator.truediv),
    ast.FloorDiv: ("//", _trunc_div),
    ast.Mod: ("%", lambda a, b: a - b * _trunc_div(a, b)),
}
# fmt: off
_COMPARISONS: dict[type[ast.cmpop], Callable[[pl.Expr, pl.Expr], pl.Expr]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
    ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
}
_MIRRORED: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.Eq, ast.NotEq: ast.NotEq, ast.Lt: ast.Gt, ast.LtE: ast.GtE, ast.Gt: ast.Lt, ast.GtE: ast.LtE,
}

# name -> (min args, max args or None for any); the bodies live in _Compiler._call.
_FUNCTIONS: dict[str, tuple[int, int | None]] = {
    "abs": (1, 1), "round": (1, 2), "coalesce": (1, None), "if_null": (2, 2), "nullif": (2, 2),
    "is_null": (1, 1), "least": (1, None), "greatest": (1, None), "log": (1, 1), "ln": (1, 1),
    "sqrt": (1, 1),
}
_ALLOWED = (
    "allowed are numbers, 'strings', true/false/null, column names, + - * / // %, unary -, "
    "== != < <= > >=, and/or/not, parentheses and the functions " + ", ".join(_FUNCTIONS)
)
_REJECTED: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access", ast.Subscript: "subscripts", ast.Slice: "slices",
    ast.Lambda: "lambda", ast.ListComp: "comprehensions", ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions", ast.GeneratorExp: "generator expressions", ast.JoinedStr: "f-strings",
    ast.NamedExpr: "assignment expressions (:=)",
    ast.IfExp: "conditional expressions (use coalesce, if_null or nullif)",
    ast.List: "list literals", ast.Tuple: "tuples", ast.Set: "set literals", ast.Dict: "dict literals",
    ast.Starred: "starred arguments", ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield",
    ast.Pow: "'**'", ast.BitAnd: "'&' (use 'and')", ast.BitOr: "'|' (use 'or')", ast.BitXor: "'^'",
    ast.LShift: "'<<'", ast.RShift: "'>>'", ast.MatMult: "'@'", ast.Invert: "'~' (use 'not')",
    ast.In: "'in' (compare with == and combine with 'or')",
    ast.NotIn: "'not in' (compare with != and combine with 'and')",
    ast.Is: "'is' (use is_null(x))", ast.IsNot: "'is not' (use not is_null(x))",
}
# fmt: on


def _apply_comparison(op: type[ast.cmpop], left: pl.Expr, right: pl.Expr) -> pl.Expr:
    if not left.meta.root_names() and right.meta.root_names():
        # Polars 1.44 returns one row for `literal == <all-null or constant column>`; the mirrored
        # comparison, with the column on the left, is evaluated correctly.
        return _COMPARISONS[_MIRRORED[op]](right, left)
    return _COMPARISONS[op](left, right)


class _Compiler:
    """Compiles one parsed expression; collects the column names it references."""

    def __init__(self, text: str, columns: Collection[str] | None) -> None:
        self.text = text
        self.source = text.strip()
        self.shift = len(text) - len(text.lstrip())  # leading blanks stripped before parsing
        self.schema: Mapping[str, pl.DataType] | None = columns if isinstance(columns, Mapping) else None
        self.names = None if columns is None else frozenset(columns)
        self.referenced: set[str] = set()

    def parse(self) -> ast.expr:
        if len(self.text) > _MAX_LENGTH:
            msg = f"expression is {len(self.text)} characters long; at most {_MAX_LENGTH} are accepted"
            raise InvalidRequestError(msg)
        if not self.source:
            msg = "empty expression: write e.g. 'revenue - spend' or 'roas > 2'"
            raise InvalidRequestError(msg)
        try:
            return ast.parse(self.source, mode="eval").body
        except SyntaxError as exc:
            where = self._position(exc.lineno or 1, (exc.offset or 1) - 1)
            msg = f"cannot parse expression {self.text!r}: {exc.msg} at {where}{_syntax_hint(self.source)}"
            raise InvalidRequestError(msg) from None
        except ValueError as exc:  # e.g. NUL characters
            msg = f"cannot parse expression {self.text!r}: {exc}"
            raise InvalidRequestError(msg) from None
        except RecursionError:
            msg = f"expression {self.text[:80]!r}... is nested too deeply; simplify it"
            raise InvalidRequestError(msg) from None

    def _position(self, line: int, column: int) -> str:
        if line == 1:
            column += self.shift
        return f"column {column + 1}" if line == 1 else f"line {line}, column {column + 1}"

    def fail(self, node: ast.AST, what: str, hint: str = "") -> NoReturn:
        line = getattr(node, "lineno", 1)
        text_line = self.source.splitlines()[line - 1] if self.source else ""
        # ast offsets count UTF-8 bytes; users count characters.
        column = len(text_line.encode()[: getattr(node, "col_offset", 0)].decode(errors="ignore"))
        msg = f"{what} at {self._position(line, column)} of expression {self.text!r}{hint}"
        raise InvalidRequestError(msg)

    def snippet(self, node: ast.AST) -> str:
        return repr(ast.get_source_segment(self.source, node) or type(node).__name__)

    def reject(self, node: ast.AST, construct: ast.AST | None = None) -> NoReturn:
        construct = construct or node
        what = _REJECTED.get(type(construct), f"{type(construct).__name__} expressions")
        self.fail(node, f"not allowed: {what}", f"; {_ALLOWED}")

    def compile(self, node: ast.expr) -> _Typed:
        match node:
            case ast.Constant(value=bool() | None):
                return _Typed(pl.lit(node.value), _Kind.NULL if node.value is None else _Kind.BOOLEAN)
            case ast.Constant(value=int() | float()):
                value = node.value
                if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
                    self.fail(node, f"integer {value} does not fit in 64 bits")
                if isinstance(value, float) and value in (float("inf"), float("-inf")):
                    self.fail(node, f"number {self.snippet(node)} is too large")
                return _Typed(pl.lit(value), _Kind.NUMBER)
            case ast.Constant(value=str() as text):
                return _Typed(pl.lit(text), _Kind.STRING, string_literal=text)
            case ast.Constant():
                self.fail(node, f"not allowed: the literal {self.snippet(node)}", f"; {_ALLOWED}")
            case ast.Name():
                return self._name(node)
            case ast.UnaryOp(op=ast.USub() | ast.UAdd()):
                minus = isinstance(node.op, ast.USub)
                operand = self._number(node.operand, "unary '-'" if minus else "unary '+'")
                return _Typed(-operand if minus else operand, _Kind.NUMBER)
            case ast.UnaryOp(op=ast.Not()):
                return _Typed(~self._boolean(node.operand, "'not'"), _Kind.BOOLEAN)
            case ast.UnaryOp():
                self.reject(node, node.op)
            case ast.BinOp():
                return self._arithmetic(node)
            case ast.BoolOp():
                word = "and" if isinstance(node.op, ast.And) else "or"
                parts = [self._boolean(value, f"'{word}'") for value in node.values]
                combine = operator.and_ if word == "and" else operator.or_
                return _Typed(reduce(combine, parts), _Kind.BOOLEAN)
            case ast.Compare():
                return self._compare(node)
            case ast.Call(func=ast.Name()):
                return self._call(node)
            case ast.Call():  # e.g. revenue.abs(): name what is wrong with the callee
                self.reject(node, node.func)
        self.reject(node)

    def _name(self, node: ast.Name) -> _Typed:
        if node.id.lower() in _LITERAL_NAMES:
            value = _LITERAL_NAMES[node.id.lower()]
            return _Typed(pl.lit(value), _Kind.NULL if value is None else _Kind.BOOLEAN)
        if self.names is not None and node.id not in self.names:
            known = sorted(self.names)
            listing = ", ".join(known[:30]) + (", ..." if len(known) > 30 else "")
            hint = f"{did_you_mean(node.id, known) or ';'} known columns: {listing or '(none)'}"
            self.fail(node, f"unknown column {node.id!r}", hint)
        self.referenced.add(node.id)
        if self.schema is None:
            return _Typed(pl.col(node.id), _Kind.UNKNOWN)
        dtype = self.schema[node.id]
        return _Typed(pl.col(node.id), _kind_of(dtype), dtype)

    def _number(self, node: ast.expr, context: str) -> pl.Expr:
        typed = self.compile(node)
        if typed.kind is _Kind.NULL:  # Polars cannot negate or divide the Null type
            return typed.expr.cast(pl.Int64)
        if typed.kind not in (_Kind.NUMBER, _Kind.UNKNOWN):
            self.fail(node, f"{context} needs numbers, but {self.snippet(node)} is {typed.kind.value}")
        return typed.expr

    def _boolean(self, node: ast.expr, context: str) -> pl.Expr:
        typed = self.compile(node)
        if typed.kind is _Kind.NULL:
            return typed.expr.cast(pl.Boolean)
        if typed.kind not in (_Kind.BOOLEAN, _Kind.UNKNOWN):
            hint = "; compare it first, e.g. 'x > 0'"
            self.fail(
                node, f"{context} needs true/false, but {self.snippet(node)} is {typed.kind.value}", hint
            )
        return typed.expr

    def _arithmetic(self, node: ast.BinOp) -> _Typed:
        if type(node.op) not in _ARITHMETIC:
            self.reject(node, node.op)
        symbol, function = _ARITHMETIC[type(node.op)]
        left = self._number(node.left, f"'{symbol}'")
        right = self._number(node.right, f"'{symbol}'")
        return _Typed(function(left, right), _Kind.NUMBER)

    def _compare(self, node: ast.Compare) -> _Typed:
        for op in node.ops:
            if type(op) not in _COMPARISONS:
                self.reject(node, op)
        operands = [node.left, *node.comparators]
        typed = [self.compile(operand) for operand in operands]
        parts: list[pl.Expr] = []
        for index, op in enumerate(node.ops):
            left, right = self._comparable(operands[index : index + 2], typed[index : index + 2])
            parts.append(_apply_comparison(type(op), left, right))
        return _Typed(reduce(operator.and_, parts), _Kind.BOOLEAN)

    def _comparable(self, nodes: Sequence[ast.expr], typed: Sequence[_Typed]) -> list[pl.Expr]:
        """The operands' expressions if they can be compared (a Date against an ISO date string too)."""
        exprs = [item.expr for item in typed]
        kinds = [item.kind for item in typed]
        for this, other in ((0, 1), (1, 0)):
            literal = typed[other].string_literal
            if typed[this].dtype == pl.Date and literal is not None:
                try:
                    exprs[other] = pl.lit(dt.date.fromisoformat(literal))
                except ValueError:
                    self.fail(nodes[other], f"{literal!r} is not a date", "; write it as 'YYYY-MM-DD'")
                return exprs
        if any(kind in _UNCHECKED for kind in kinds) or (kinds[0] == kinds[1] != _Kind.OTHER):
            return exprs
        if kinds[0] == kinds[1] and typed[0].dtype == typed[1].dtype:
            return exprs
        what = (
            f"cannot compare {self.snippet(nodes[0])} ({kinds[0].value}) "
            f"with {self.snippet(nodes[1])} ({kinds[1].value})"
        )
        self.fail(nodes[0], what)

    def _same_kind(
        self, node: ast.Call, name: str, allowed: Collection[_Kind]
    ) -> tuple[list[pl.Expr], _Kind]:
        """Compile the arguments of ``name``; they must all yield one kind out of ``allowed``."""
        typed = [self.compile(arg) for arg in node.args]
        kinds = {item.kind for item in typed} - set(_UNCHECKED)
        if len(kinds) > 1 or not kinds <= set(allowed):
            described = ", ".join(
                f"{self.snippet(arg)} is {t.kind.value}" for arg, t in zip(node.args, typed, strict=True)
            )
            self.fail(node, f"the arguments of {name}() must be of one kind ({described})")
        if kinds:
            kind = kinds.pop()
        else:  # only nulls and unchecked columns: unknown unless every argument is a null literal
            kind = _Kind.NULL if all(t.kind is _Kind.NULL for t in typed) else _Kind.UNKNOWN
        return [item.expr for item in typed], kind

    def _call(self, node: ast.Call) -> _Typed:
        assert isinstance(node.func, ast.Name)
        name = node.func.id.lower()
        if name not in _FUNCTIONS:
            hint = f"{did_you_mean(name, _FUNCTIONS) or ';'} {_ALLOWED}"
            self.fail(node, f"function {node.func.id!r} is not allowed", hint)
        if node.keywords:
            self.fail(node, f"{name}() takes no keyword arguments", "; pass arguments by position")
        low, high = _FUNCTIONS[name]
        if not low <= len(node.args) <= (high if high is not None else len(node.args)):
            expected = f"{low}" if low == high else f"{low} to {high}" if high else f"at least {low}"
            self.fail(node, f"{name}() takes {expected} argument(s), got {len(node.args)}")
        first = node.args[0]
        scalars = (_Kind.NUMBER, _Kind.STRING, _Kind.TEMPORAL, _Kind.BOOLEAN)
        match name:
            case "abs":
                return _Typed(self._number(first, "abs()").abs(), _Kind.NUMBER)
            case "round":
                digits = self._round_digits(node)
                return _Typed(
                    self._number(first, "round()").round(digits, mode="half_away_from_zero"), _Kind.NUMBER
                )
            case "log" | "ln" | "sqrt":
                value = self._number(first, f"{name}()")
                result = value.sqrt() if name == "sqrt" else value.log(10) if name == "log" else value.log()
                return _Typed(result, _Kind.NUMBER)
            case "is_null":
                return _Typed(self.compile(first).expr.is_null(), _Kind.BOOLEAN)
            case "coalesce" | "if_null":
                exprs, kind = self._same_kind(node, name, scalars)
                return _Typed(pl.coalesce(exprs), kind)
            case "least" | "greatest":
                exprs, kind = self._same_kind(node, name, (_Kind.NUMBER, _Kind.STRING, _Kind.TEMPORAL))
                return _Typed(_extreme(exprs, ast.LtE if name == "least" else ast.GtE), kind)
            case "nullif":
                typed = [self.compile(arg) for arg in node.args]
                value, other = self._comparable(node.args, typed)
                same = _apply_comparison(ast.Eq, value, other)
                return _Typed(pl.when(same).then(None).otherwise(value), typed[0].kind, typed[0].dtype)
        msg = f"function {name!r} is declared but not implemented"  # unreachable: keeps the table honest
        raise AssertionError(msg)

    def _round_digits(self, node: ast.Call) -> int:
        if len(node.args) == 1:
            return 0
        digits = node.args[1]
        if not (isinstance(digits, ast.Constant) and type(digits.value) is int):
            self.fail(digits, "round()'s second argument must be a whole number of digits, like round(x, 2)")
        if not 0 <= digits.value <= _MAX_ROUND_DIGITS:
            self.fail(digits, f"round() digits must be between 0 and {_MAX_ROUND_DIGITS}, got {digits.value}")
        return digits.value


def _syntax_hint(source: str) -> str:
    if re.search(r"(?<![=!<>])=(?!=)", source):
        return "; compare with '==' (a single '=' is not an expression)"
    if re.search(r"\b(AND|OR|NOT|And|Or|Not)\b", source):
        return "; write 'and', 'or', 'not' in lower case"
    if "<>" in source:
        return "; write '!=' for 'not equal'"
    return "; expressions use Python syntax, e.g. 'roas > 2 and revenue >= 100'"


def _compile(text: str, columns: Collection[str] | None) -> tuple[_Typed, frozenset[str]]:
    compiler = _Compiler(text, columns)
    tree = compiler.parse()
    try:
        typed = compiler.compile(tree)
    except RecursionError:
        msg = f"expression {text[:80]!r}... is nested too deeply; simplify it"
        raise InvalidRequestError(msg) from None
    return typed, frozenset(compiler.referenced)


def parse_expression(text: str, *, columns: Collection[str]) -> pl.Expr:
    """Compile ``text`` to a Polars expression over ``columns``.

    Pass a schema (``Mapping[str, pl.DataType]``) as ``columns`` to type-check as well.

    >>> df = pl.DataFrame({"revenue": [10.0, 0.0], "spend": [4.0, 0.0]})
    >>> df.select(parse_expression("revenue / nullif(spend, 0)", columns=df.schema)).to_series().to_list()
    [2.5, None]
    """
    return _compile(text, columns)[0].expr


def parse_predicate(text: str, *, columns: Collection[str]) -> pl.Expr:
    """Like :func:`parse_expression`, but the result must be true/false (a HAVING condition)."""
    typed, _ = _compile(text, columns)
    if typed.kind not in (_Kind.BOOLEAN, _Kind.NULL, _Kind.UNKNOWN):
        msg = f"condition {text!r} gives {typed.kind.value}, not true/false; compare it: '{text.strip()} > 0'"
        raise InvalidRequestError(msg)
    return typed.expr.cast(pl.Boolean) if typed.kind is _Kind.NULL else typed.expr


def referenced_columns(text: str) -> frozenset[str]:
    """The column names ``text`` reads; also checks its syntax and the allow-list (not the columns)."""
    return _compile(text, None)[1]


def is_identifier(name: str) -> bool:
    """Whether ``name`` can name a derived column and be referenced from an expression."""
    reserved = keyword.iskeyword(name) or name.lower() in _LITERAL_NAMES
    return _IDENTIFIER.fullmatch(name) is not None and not reserved


def _split_assignment(text: str) -> tuple[str, str]:
    match = _ASSIGNMENT.fullmatch(text)
    if match is None:
        msg = f"expected NAME=EXPRESSION, e.g. 'roas=revenue/spend'; got {text!r}"
        raise InvalidRequestError(msg)
    return match.group(1), match.group(2)


def _check_new_name(name: str, columns: Collection[str]) -> None:
    if not is_identifier(name):
        msg = (
            f"{name!r} cannot name a derived metric: use letters, digits and '_', not starting with a digit, "
            "and not a keyword such as 'and' or 'null'"
        )
        raise InvalidRequestError(msg)
    if name in columns:
        msg = f"derived metric {name!r} would replace the existing column {name!r}; choose another name"
        raise InvalidRequestError(msg)


def parse_assignment(text: str, *, columns: Collection[str]) -> tuple[str, pl.Expr]:
    """Parse the CLI's ``--derive NAME=EXPR``; NAME must be new, EXPR may read ``columns``."""
    name, expression = _split_assignment(text)
    _check_new_name(name, columns)
    return name, parse_expression(expression, columns=columns)


@dataclass(frozen=True)
class DerivedMetric:
    """``name = expression``, evaluated over the joined frame (seed 003 §8.2 step 3)."""

    name: str
    expression: str

    def __post_init__(self) -> None:
        _check_new_name(self.name, ())
        if self.name in referenced_columns(self.expression):
            msg = f"derived metric {self.name!r} refers to itself in {self.expression!r}"
            raise InvalidRequestError(msg)

    @classmethod
    def parse(cls, text: str) -> DerivedMetric:
        """From the CLI form ``roas=revenue/spend``."""
        name, expression = _split_assignment(text)
        return cls(name, expression.strip())


@dataclass(frozen=True)
class FrameExpression:
    """Derived metrics added in order; a later one may use an earlier one."""

    derived: tuple[DerivedMetric, ...] = ()

    def __post_init__(self) -> None:
        names = [metric.name for metric in self.derived]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            msg = f"derived metrics defined more than once: {', '.join(duplicates)}; rename all but one"
            raise InvalidRequestError(msg)

    def apply(self, lf: pl.LazyFrame) -> pl.LazyFrame:
        """``lf`` with one column per derived metric, appended in declared order."""
        schema = dict(lf.collect_schema())
        for metric in self.derived:
            _check_new_name(metric.name, schema)
            expr = parse_expression(metric.expression, columns=schema).alias(metric.name)
            try:  # a schema-only plan: catches what our checks let through, without touching data
                schema[metric.name] = pl.LazyFrame(schema=schema).select(expr).collect_schema()[metric.name]
            except pl.exceptions.PolarsError as exc:
                first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                msg = f"derived metric {metric.name}={metric.expression!r} cannot be evaluated: {first_line}"
                raise InvalidRequestError(msg) from None
            lf = lf.with_columns(expr)
        return lf
