"""CEL filters of computed traits: compiled once, evaluated per event, and parsed into the subset SQL can express.

The stream evaluates the filter with the `cel` package (Google CEL, Rust bindings). The same text is parsed here
into a small tree that `computed_sql` turns into SQL. The subset (documented in docs/computed-traits.md):

- `event.<name>.<name>...` field access (the filter sees one variable, `event`: the Segment-shaped payload);
- a field compared with a literal: `==`, `!=` with a number, string, bool or `null`; `<`, `<=`, `>`, `>=` with a
  number (literal on either side); `field in [literal, ...]`;
- `has(event.a.b)`; `field.startsWith("x")`, `.endsWith("x")`, `.contains("x")`;
- a bool field on its own, `true`, `false`, `!`, `&&`, `||` and parentheses.

Anything else (arithmetic, functions, macros, field-to-field comparisons, ternaries) is refused with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cel

from orchestrion.model.computed_declaration import ComputedTraitError

Scalar = str | int | float | bool | None
MAX_EXACT_INT = 2**53  # numbers compare as 64-bit floats in SQL; ints beyond this would compare inexactly


class UnsupportedFilter(ValueError):
    """The filter is valid CEL but outside the subset that compiles to SQL."""


class FilterEvaluationError(Exception):
    """The filter raised, or gave something other than a bool, on one event: the event does not count."""


# --- the tree --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    path: tuple[str, ...]  # below `event`, e.g. ("properties", "duration_min")


@dataclass(frozen=True, slots=True)
class Literal:
    value: Scalar


@dataclass(frozen=True, slots=True)
class ListLiteral:
    values: tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class BoolConstant:
    value: bool


@dataclass(frozen=True, slots=True)
class FieldIsTrue:
    """A bare field used as a condition: true/false when it is a bool, an error otherwise."""

    field: Field


@dataclass(frozen=True, slots=True)
class Compare:
    op: str  # one of == != < <= > >=, with the field on the left
    field: Field
    literal: Scalar


@dataclass(frozen=True, slots=True)
class InList:
    field: Field
    values: tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class Has:
    field: Field


@dataclass(frozen=True, slots=True)
class StringTest:
    method: str  # startsWith, endsWith, contains
    field: Field
    argument: str


@dataclass(frozen=True, slots=True)
class Not:
    operand: Condition


@dataclass(frozen=True, slots=True)
class Logical:
    op: str  # && or ||
    left: Condition
    right: Condition


Condition = BoolConstant | FieldIsTrue | Compare | InList | Has | StringTest | Not | Logical
Node = Condition | Field | Literal | ListLiteral

_FLIPPED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_STRING_METHODS = ("startsWith", "endsWith", "contains")


def fields_of(node: Node) -> Iterator[Field]:
    """Every field a condition reads: the stream passes only these to CEL."""
    if isinstance(node, Field):
        yield node
    elif isinstance(node, FieldIsTrue | Compare | InList | Has | StringTest):
        yield node.field
    elif isinstance(node, Not):
        yield from fields_of(node.operand)
    elif isinstance(node, Logical):
        yield from fields_of(node.left)
        yield from fields_of(node.right)


# --- tokens ----------------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|//[^\n]*)
  | (?P<string>[rRbB]{0,2}(?:\"\"\"|'''|"|'))
  | (?P<number>0[xX][0-9a-fA-F]+[uU]?|(?:\d*\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)|\d+[uU]?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>&&|\|\||==|!=|<=|>=|[<>!()\[\],.\-+*/%?:{}])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # string, number, name, op, end
    text: str
    value: Any = None


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise UnsupportedFilter(f"unexpected character {text[pos]!r} at {pos + 1}")
        kind = match.lastgroup or ""
        if kind == "string":
            end = _string_end(text, match.end(), match.group())
            literal = text[pos:end]
            if "b" in match.group().lower():
                raise UnsupportedFilter(f"bytes literal {literal} is outside the SQL subset")
            tokens.append(_Token("string", literal, cel.evaluate(literal)))
            pos = end
            continue
        if kind == "number":
            literal = match.group()
            if literal[-1] in "uU":
                raise UnsupportedFilter(f"unsigned literal {literal} is outside the SQL subset; write {literal[:-1]}")
            tokens.append(_Token("number", literal, cel.evaluate(literal)))
        elif kind != "space":
            tokens.append(_Token(kind, match.group()))
        pos = match.end()
    tokens.append(_Token("end", ""))
    return tokens


def _string_end(text: str, start: int, opener: str) -> int:
    """Index just past the closing quote of a literal whose opening (prefix and quotes) ends at `start`."""
    quote = opener.lstrip("rRbB")
    raw = "r" in opener.lower()
    pos = start
    while pos < len(text):
        if not raw and text[pos] == "\\":
            pos += 2
            continue
        if text.startswith(quote, pos):
            return pos + len(quote)
        pos += 1
    raise UnsupportedFilter("unterminated string literal")


# --- parser ----------------------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self, offset: int = 0) -> _Token:
        return self.tokens[min(self.pos + offset, len(self.tokens) - 1)]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text or token.kind not in ("op", "name"):
            raise UnsupportedFilter(f"expected {text!r}, found {token.text or 'the end'!r}")

    def parse(self) -> Condition:
        condition = self.condition(self.disjunction())
        token = self.peek()
        if token.kind != "end":
            raise UnsupportedFilter(_refusal(token))
        return condition

    def condition(self, node: Node) -> Condition:
        if isinstance(node, Field):
            return FieldIsTrue(node)
        if isinstance(node, Literal):
            if isinstance(node.value, bool):
                return BoolConstant(node.value)
            raise UnsupportedFilter(f"the literal {node.value!r} is not a condition")
        if isinstance(node, ListLiteral):
            raise UnsupportedFilter("a list is not a condition")
        return node

    def disjunction(self) -> Node:
        node = self.conjunction()
        while self.peek().text == "||" and self.peek().kind == "op":
            self.take()
            node = Logical("||", self.condition(node), self.condition(self.conjunction()))
        return node

    def conjunction(self) -> Node:
        node = self.relation()
        while self.peek().text == "&&" and self.peek().kind == "op":
            self.take()
            node = Logical("&&", self.condition(node), self.condition(self.relation()))
        return node

    def relation(self) -> Node:
        left = self.unary()
        token = self.peek()
        if not _is_relation(token):
            return left
        self.take()
        right = self.unary()
        if _is_relation(self.peek()):
            raise UnsupportedFilter("chained comparisons (a < b < c) are outside the SQL subset; join them with &&")
        return _comparison(token.text, left, right)

    def unary(self) -> Node:
        token = self.peek()
        if token.kind == "op" and token.text == "!":
            self.take()
            node: Node = Not(self.condition(self.unary()))
        elif token.kind == "op" and token.text == "-":
            self.take()
            number = self.take()
            if number.kind != "number":
                raise UnsupportedFilter("'-' applies to number literals only in the SQL subset")
            node = _literal(-number.value)
        else:
            node = self.member()
        following = self.peek()
        if following.kind == "op" and following.text in ("+", "-", "*", "/", "%", "?", ":", "{", "}"):
            raise UnsupportedFilter(_refusal(following))
        return node

    def member(self) -> Node:
        token = self.take()
        if token.kind == "op" and token.text == "(":
            inner = self.disjunction()
            self.expect(")")
            return inner
        if token.kind == "op" and token.text == "[":
            return self.list_literal()
        if token.kind in ("string", "number"):
            return _literal(token.value)
        if token.kind == "name":
            if token.text in ("true", "false"):
                return Literal(token.text == "true")
            if token.text == "null":
                return Literal(None)
            if token.text == "has" and self.peek().text == "(":
                self.take()
                target = self.member()
                self.expect(")")
                if not isinstance(target, Field):
                    raise UnsupportedFilter("has() takes a field, e.g. has(event.properties.plan)")
                return Has(target)
            if token.text == "event":
                return self.field_path()
            if self.peek().text == "(":
                raise UnsupportedFilter(f"function {token.text}() is outside the SQL subset")
            raise UnsupportedFilter(f"unknown name {token.text!r}; a filter sees one variable, 'event'")
        raise UnsupportedFilter(_refusal(token))

    def field_path(self) -> Node:
        path: list[str] = []
        while self.peek().text == ".":
            self.take()
            name = self.take()
            if name.kind != "name":
                raise UnsupportedFilter(f"expected a field name after '.', found {name.text!r}")
            if self.peek().text == "(":
                return self.method_call(Field(tuple(path)), name.text)
            path.append(name.text)
        if self.peek().text == "[":
            raise UnsupportedFilter("indexing (a[b]) is outside the SQL subset; use dotted field names")
        if not path:
            raise UnsupportedFilter("use a field of event (e.g. event.properties.plan), not event itself")
        return Field(tuple(path))

    def method_call(self, target: Field, method: str) -> Node:
        if method not in _STRING_METHODS:
            supported = ", ".join(f".{name}()" for name in _STRING_METHODS)
            raise UnsupportedFilter(f"method .{method}() is outside the SQL subset (supported: {supported})")
        if not target.path:
            raise UnsupportedFilter(f".{method}() applies to a field of event, not to event itself")
        self.expect("(")
        argument = self.take()
        if argument.kind != "string":
            raise UnsupportedFilter(f".{method}() takes one string literal in the SQL subset")
        self.expect(")")
        if self.peek().text in (".", "["):
            raise UnsupportedFilter(f"nothing may follow .{method}() in the SQL subset")
        return StringTest(method, target, argument.value)

    def list_literal(self) -> ListLiteral:
        values: list[Scalar] = []
        while self.peek().text != "]":
            item = self.unary()
            if not isinstance(item, Literal):
                raise UnsupportedFilter("list elements must be literals (numbers, strings, bools, null)")
            values.append(item.value)
            if self.peek().text == ",":
                self.take()
            elif self.peek().text != "]":
                raise UnsupportedFilter(_refusal(self.peek()))
        self.take()
        return ListLiteral(tuple(values))


def _is_relation(token: _Token) -> bool:
    return (token.kind == "op" and token.text in _FLIPPED) or (token.kind == "name" and token.text == "in")


def _literal(value: Any) -> Literal:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_EXACT_INT:
        raise UnsupportedFilter(f"integer {value} is beyond ±2^53, where SQL compares numbers inexactly")
    return Literal(value)


def _comparison(op: str, left: Node, right: Node) -> Condition:
    if op == "in":
        if isinstance(left, Field) and isinstance(right, ListLiteral):
            return InList(left, right.values)
        raise UnsupportedFilter("'in' is supported as <field> in [<literal>, ...] only")
    if isinstance(left, Literal) and isinstance(right, Field):
        left, right, op = right, left, _FLIPPED[op]
    if not (isinstance(left, Field) and isinstance(right, Literal)):
        raise UnsupportedFilter(f"'{op}' compares a field of event with a literal in the SQL subset")
    value = right.value
    if op not in ("==", "!=") and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise UnsupportedFilter(f"'{op}' compares with numbers only in the SQL subset (got {value!r})")
    return Compare(op, left, value)


def _refusal(token: _Token) -> str:
    if token.text in ("+", "-", "*", "/", "%"):
        return f"arithmetic ('{token.text}') is outside the SQL subset"
    if token.text in ("?", ":"):
        return "the conditional operator (a ? b : c) is outside the SQL subset"
    if token.text in ("{", "}"):
        return "map literals are outside the SQL subset"
    return f"unexpected {token.text or 'end of filter'!r}"


def parse_filter(text: str) -> Condition:
    """The filter as a condition tree; raise UnsupportedFilter when it leaves the SQL subset."""
    return _Parser(text).parse()


# --- evaluation on the stream ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledFilter:
    """A filter compiled once: the CEL program, its tree and the part of the payload it reads."""

    text: str
    program: cel.Program
    condition: Condition
    reads: dict[str, Any]  # nested keys the filter reads, e.g. {"properties": {"duration_min": {}}}

    def matches(self, payload: dict[str, Any]) -> bool:
        """True when the event passes; raise FilterEvaluationError when CEL raises or answers a non-bool."""
        try:
            result = self.program.execute({"event": _project(payload, self.reads)})
        except Exception as exc:  # the binding raises KeyError, TypeError, RuntimeError...: all mean "no"
            raise FilterEvaluationError(f"{type(exc).__name__}: {str(exc)[:200]}") from None
        if not isinstance(result, bool):
            raise FilterEvaluationError(f"the filter gave {type(result).__name__} {result!r}, not a bool")
        return result


def _project(value: Any, reads: dict[str, Any]) -> Any:
    """`value` cut down to the keys the filter reads: evaluation sees the same values and converts far less.

    A key read whole (no keys below it) keeps its value; a value that is not an object stays as it is, so CEL
    meets the same type errors as on the full payload.
    """
    if not isinstance(value, dict):
        return value
    return {key: _project(value[key], below) if below else value[key] for key, below in reads.items() if key in value}


@lru_cache(maxsize=4096)
def compiled_filter(text: str) -> CompiledFilter:
    """Compile (once per distinct text) a filter already checked by `check_filter`."""
    condition = parse_filter(text)
    reads: dict[str, Any] = {}
    for field in fields_of(condition):
        level = reads
        for key in field.path:
            level = level.setdefault(key, {})
    return CompiledFilter(text, cel.compile(text), condition, reads)


def check_filter(trait: str, text: str) -> None:
    """Raise ComputedTraitError (naming the trait) unless `text` is valid CEL inside the SQL subset."""
    try:
        cel.compile(text)
    except Exception as exc:
        raise ComputedTraitError(trait, "filter", f"not valid CEL: {str(exc).strip()}") from None
    try:
        parse_filter(text)
    except UnsupportedFilter as exc:
        raise ComputedTraitError(trait, "filter", f"{exc} (filter: {text})") from None
