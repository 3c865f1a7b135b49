"""`dataflow fmt`: print a `.flow` file in its canonical layout, keeping every comment.

The layout: one declaration per line group, records and settings one field per line,
a pipe on one line when it is short (at most two stages, 80 columns), otherwise one
`| stage` per line; minimal parentheses; options in a fixed order. Formatting is
idempotent and keeps the meaning: the formatted file compiles to the same plan.

Comments stay with what they annotate: a comment at the end of a line stays at the
end of that line's construct; a comment on its own line stays before the construct
that follows it. A single blank line between declarations is kept.

>>> print(format_source("pipeline p topic t t|filter (a+b)*2>x|to stdout   # big"), end="")
pipeline p
topic t
t | filter (a + b) * 2 > x | to stdout  # big
>>> print(format_source("pipeline p topic t t|filter (a+b)*2>x   # big\\n|to stdout"), end="")
pipeline p
topic t
t
  | filter (a + b) * 2 > x  # big
  | to stdout
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from lark import Token, Tree

from ..ir.diagnostics import Diagnostic
from .diagnostics import FlowError, span
from .parser import parse

WIDTH = 80
INDENT = "  "
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: fixed order of keyword options, so two spellings of the same declaration print the same
OPTION_ORDER = {
    "topic_key": 0, "partitions_option": 1, "serializer_option": 2, "key_serializer_option": 3,
    "event_time_option": 4,
    "window_step": 0, "window_on": 1, "window_time": 2, "window_grace": 3, "window_expires": 4,
    "join_within": 0, "join_on": 1,
}
_PREC = {"or_op": 1, "and_op": 2, "not_op": 3, "compare": 4, "is_null": 4, "is_not_null": 4, "neg": 7}


def format_source(text: str, filename: str = "<string>") -> str:
    """The canonical layout of `text`; raises FlowError when it does not parse.

    >>> format_source(format_source("pipeline p\\ntopic t # in\\n")) == format_source("pipeline p\\ntopic t # in\\n")
    True
    """
    comments: list[Token] = []
    tree = parse(text, filename, comments)
    try:
        return _Formatter([Comment(c.line or 1, c.column or 1, c.value.rstrip()) for c in comments]).file(tree)
    except RecursionError:
        deepest = max(tree.children, key=_depth)
        raise FlowError([Diagnostic("this declaration nests too deeply to format", span(filename, deepest),
                                    "split long expressions into several steps")], text, filename) from None


def _depth(tree: Any) -> int:
    """How deeply `tree` nests, without recursion (a tree too deep for the printer is the point)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in getattr(node, "children", ()) if isinstance(child, Tree))
    return deepest


def topic_name(name: str) -> str:
    """A topic as written in `.flow`: bare when it is a plain name, else a string."""
    return name if _NAME.match(name) else _quote(name)


def _quote(text: str) -> str:
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{out}"'


# --------------------------------------------------------------------------- comments


@dataclass(frozen=True, order=True)
class Comment:
    line: int
    column: int
    text: str = field(compare=False)

    @property
    def pos(self) -> tuple[int, int]:
        return (self.line, self.column)


def _start(node: Any) -> tuple[int, int]:
    if isinstance(node, Token):
        return (node.line or 0, node.column or 0)
    return (node.meta.line, node.meta.column)


def _end(node: Any) -> tuple[int, int]:
    if isinstance(node, Token):
        return (node.end_line or 0, node.end_column or 0)
    return (node.meta.end_line, node.meta.end_column)


@dataclass
class Placed:
    """Comments of a block, sorted out between its units."""

    leading: list[list[Comment]]
    trailing: list[Comment | None]
    inner: list[list[Comment]]
    tail: list[Comment]


def _distribute(units: list[tuple[tuple[int, int], tuple[int, int]]], comments: list[Comment]) -> Placed:
    placed = Placed([[] for _ in units], [None for _ in units], [[] for _ in units], [])
    for c in sorted(comments):
        inside = next((i for i, (s, e) in enumerate(units) if s <= c.pos < e), None)
        if inside is not None:
            placed.inner[inside].append(c)
            continue
        before = [i for i, (_s, e) in enumerate(units) if e <= c.pos and e[0] == c.line]
        if before and placed.trailing[before[-1]] is None:
            placed.trailing[before[-1]] = c
            continue
        after = next((i for i, (s, _e) in enumerate(units) if s > c.pos), None)
        if after is None:
            placed.tail.append(c)
        else:
            placed.leading[after].append(c)
    return placed


def _with_trailing(lines: list[str], comment: Comment | None) -> list[str]:
    if comment is None:
        return lines
    return [*lines[:-1], f"{lines[-1]}  {comment.text}"]


def _within(node: Any, comments: list[Comment]) -> list[Comment]:
    s, e = _start(node), _end(node)
    return [c for c in comments if s <= c.pos < e]


# --------------------------------------------------------------------------- the printer


class _Formatter:
    def __init__(self, comments: list[Comment]):
        self.comments = comments

    # ------------------------------------------------------------------ file
    def file(self, tree: Any) -> str:
        statements = list(tree.children)
        units = [(_start(s), _end(s)) for s in statements]
        placed = _distribute(units, self.comments)
        out: list[str] = []
        last_line = 0  # source line where the previous emitted item ended

        def emit(lines: list[str], first_line: int, end_line: int) -> None:
            nonlocal last_line
            if out and first_line > last_line + 1:
                out.append("")
            out.extend(lines)
            last_line = end_line

        for i, statement in enumerate(statements):
            for c in placed.leading[i]:
                emit([c.text], c.line, c.line)
            hoisted, lines = self.statement(statement, placed.inner[i])
            for c in hoisted:
                emit([c.text], c.line, c.line)
            lines = _with_trailing(lines, placed.trailing[i])
            emit(lines, units[i][0][0], units[i][1][0])
        for c in placed.tail:
            emit([c.text], c.line, c.line)
        return "\n".join(out) + "\n"

    def statement(self, node: Any, comments: list[Comment]) -> tuple[list[Comment], list[str]]:
        """(comments to print before it, its lines)."""
        printer: Callable[[Any, list[Comment]], tuple[list[Comment], list[str]]] = getattr(self, node.data)
        return printer(node, comments)

    # ------------------------------------------------------------------ header and declarations
    def pipeline_decl(self, node: Any, comments: list[Comment]) -> tuple[list[Comment], list[str]]:
        name = self.pipeline_name(node.children[0])
        settings = node.children[1].children if len(node.children) > 1 else []
        if not settings:
            return comments, [f"pipeline {name}"]
        header_end = _end(node.children[0])
        before = [c for c in comments if c.pos < header_end]
        lines = self._block(f"pipeline {name} {{", settings, [c for c in comments if c.pos >= header_end],
                            lambda s: f"{s.children[0].value} {self.setting_value(s.children[1])}", "")
        return before, lines

    def pipeline_name(self, node: Any) -> str:
        return self._topic(node.children[0])

    def setting_value(self, node: Any) -> str:
        return str(node.children[0].value)

    def record_decl(self, node: Any, comments: list[Comment]) -> tuple[list[Comment], list[str]]:
        name, *fields = node.children
        before = [c for c in comments if c.pos < _end(name)]
        lines = self._block(f"record {name.value} {{", fields, [c for c in comments if c.pos >= _end(name)],
                            lambda f: f"{f.children[0].value}: {self.type(f.children[1])}", "")
        return before, lines

    def _block(self, opener: str, items: list[Any], comments: list[Comment], item: Callable[[Any], str],
               indent: str, closer: str = "}") -> list[str]:
        """`opener`, one item per line (comments kept), then the closing brace."""
        placed = _distribute([(_start(x), _end(x)) for x in items], comments)
        lines = [opener]
        inner = indent + INDENT
        for i, x in enumerate(items):
            lines.extend(inner + c.text for c in [*placed.leading[i], *placed.inner[i]])
            lines.extend(_with_trailing([inner + item(x)], placed.trailing[i]))
        lines.extend(inner + c.text for c in placed.tail)
        lines.append(indent + closer)
        return lines

    def topic_decl(self, node: Any, comments: list[Comment]) -> tuple[list[Comment], list[str]]:
        name, *rest = node.children
        text = f"topic {self._topic(name)}"
        options = [r for r in rest if isinstance(r, Tree) and r.data in OPTION_ORDER]
        value = [r for r in rest if not (isinstance(r, Tree) and r.data in OPTION_ORDER)]
        if value:
            text += f": {self.type(value[0])}"
        for option in _ordered(options):
            text += " " + self.option(option)
        return comments, [text]

    def udf_decl(self, node: Any, comments: list[Comment]) -> tuple[list[Comment], list[str]]:
        name, *types, path = node.children
        *params, returns = types
        return comments, [f"udf {name.value}({', '.join(self.type(t) for t in params)}) -> {self.type(returns)} "
                          f"= {path.value}"]

    # ------------------------------------------------------------------ types and options
    def type(self, node: Any) -> str:
        if node.data == "named_type":
            return str(node.children[0].value)
        if node.data == "unit_type":  # timestamp(ms) is plain timestamp: one spelling per type
            name, unit = (str(c.value) for c in node.children)
            return name if (name, unit) == ("timestamp", "ms") else f"{name}({unit})"
        if node.data == "list_type":
            return f"list<{self.type(node.children[0])}>"
        if node.data == "nullable_type":
            return f"{self.type(node.children[0])}?"
        return f"optional {self.type(node.children[0])}"  # optional_type

    def option(self, node: Any) -> str:
        kind = node.data
        value = node.children[0] if node.children else None
        words = {"topic_key": "key", "partitions_option": "partitions", "serializer_option": "serializer",
                 "key_serializer_option": "key_serializer", "event_time_option": "event_time",
                 "window_step": "step", "window_grace": "grace", "window_expires": "expires", "window_on": "on",
                 "window_time": "time", "join_within": "within", "emit_option": "emit",
                 "branch_default": "default"}
        if kind == "topic_key":
            return f"key {self.type(value)}"
        if kind in ("event_time_option", "window_on"):
            return f"{words[kind]} {self.expr(value)}"
        if kind == "join_on":
            # keys are comparisons at most (the first `and` starts the condition): parenthesize looser ones
            keys = [self._wrap(k, 4) for k in node.children if not _is(k, "join_condition")]
            condition = [f" and {self.expr(c.children[0])}" for c in node.children if _is(c, "join_condition")]
            return "on " + " = ".join(keys) + "".join(condition)
        return f"{words[kind]} {value.value}"  # type: ignore[union-attr]

    # ------------------------------------------------------------------ pipes
    def stream_decl(self, node: Any, comments: list[Comment]) -> tuple[list[Comment], list[str]]:
        return self._pipe(f"stream {node.children[0].value} = ", node.children[1], node.children[2:], comments,
                          node)

    def table_decl(self, node: Any, comments: list[Comment]) -> tuple[list[Comment], list[str]]:
        return self._pipe(f"table {node.children[0].value} = ", node.children[1], node.children[2:], comments,
                          node)

    def pipe_stmt(self, node: Any, comments: list[Comment]) -> tuple[list[Comment], list[str]]:
        return self._pipe("", node.children[0], node.children[1:], comments, node)

    def _pipe(self, prefix: str, source: Any, stages: list[Any], comments: list[Comment],
              node: Any) -> tuple[list[Comment], list[str]]:
        head_unit = (_start(node), _end(source))
        units = [head_unit, *((_start(s), _end(s)) for s in stages)]
        placed = _distribute(units, comments)
        head, kept = self._head(prefix, source, placed.inner[0])
        hoisted = [*placed.leading[0], *([] if kept else placed.inner[0])]
        flat = [self.stage(s, [], 4) for s in stages]
        one_line = " | ".join([head[0], *(f[0] for f in flat)])
        has_comments = any(placed.leading[1:]) or any(placed.inner[1:]) or any(placed.trailing) or placed.tail
        if (not has_comments and len(stages) <= 2 and len(one_line) <= WIDTH
                and len(head) == 1 and all(len(f) == 1 for f in flat)):
            return hoisted, [one_line]
        lines = _with_trailing(head, placed.trailing[0])
        for i, stage in enumerate(stages, start=1):
            stage_comments = [*placed.leading[i]]
            stage_lines = self.stage(stage, placed.inner[i], 4)
            if stage.data not in ("aggregate_stage", "branch_stage", "map_stage", "flat_map_stage") \
                    or len(stage_lines) == 1:
                stage_comments.extend(placed.inner[i])  # an atomic stage: its inner comments go before it
                stage_lines = self.stage(stage, [], 4)
            lines.extend(INDENT + c.text for c in stage_comments)
            stage_lines = [f"{INDENT}| {stage_lines[0]}", *stage_lines[1:]]
            lines.extend(_with_trailing(stage_lines, placed.trailing[i]))
        lines.extend(INDENT + c.text for c in placed.tail)
        return hoisted, lines

    def _head(self, prefix: str, source: Any, comments: list[Comment]) -> tuple[list[str], bool]:
        """`stream x = SOURCE` on one line, or a timer's record value one field per line when
        it is long or has comments (kept inside it: the bool says so)."""
        line = prefix + self.source(source)
        if source.data != "timer_source" or len(source.children) < 2 or (len(line) <= WIDTH and not comments):
            return [line], False
        value = source.children[1].children[0]
        if not (isinstance(value, Tree) and value.data == "record_expr"):
            return [line], False
        return self._braces(f"{prefix}every {source.children[0].value} emit", value.children, comments, 0, "",
                            self._record_item), True

    def source(self, node: Any) -> str:
        if node.data == "topic_source":
            return f"topic {self._topic(node.children[0])}" + (" bootstrap" if len(node.children) > 1 else "")
        if node.data == "timer_source":
            interval, *emit = node.children
            return f"every {interval.value}" + "".join(f" emit {self.expr(e.children[0])}" for e in emit)
        return self.ref(node)

    def ref(self, node: Any) -> str:
        return ".".join(t.value for t in node.children)

    def stage(self, node: Any, comments: list[Comment], indent: int) -> list[str]:
        """The stage's text (without `| `); several lines for a block too long or with comments."""
        kind = node.data
        c: list[Any] = node.children
        if kind in ("filter_stage", "select_key_stage", "event_time_stage"):
            return [f"{kind[:-6]} {self.expr(c[0])}"]
        if kind in ("map_stage", "flat_map_stage"):
            word = kind[:-6]
            value = c[0]
            if isinstance(value, Tree) and value.data == "record_expr":
                return self._braces(word, value.children, comments, indent, "", self._record_item)
            return [f"{word} {self.expr(value)}"]
        if kind == "group_by_stage":
            return [" ".join([f"group_by {self.expr(c[0])}", *(self.option(o) for o in c[1:])])]
        if kind == "through_stage":
            return [" ".join([f"through {self._topic(c[0])}", *(self.option(o) for o in _ordered(c[1:]))])]
        if kind == "window_stage":
            return [" ".join([f"window {c[0].value} {c[1].value}", *(self.option(o) for o in _ordered(c[2:]))])]
        if kind == "aggregate_stage":
            items = [x for x in c if x.data == "aggregation"]
            emit = [x for x in c if x.data == "emit_option"]
            suffix = "".join(" " + self.option(x) for x in emit)
            return self._braces("aggregate", items, comments, indent, suffix, self._aggregation)
        if kind == "to_table_stage":
            return ["to_table"]
        if kind == "changes_stage":
            return ["changes"]
        if kind == "join_stage":
            how = [f"{self._word(x)} " for x in c if isinstance(x, Tree) and x.data == "join_how"]
            ref = next(x for x in c if isinstance(x, Tree) and x.data == "ref")
            options = [x for x in c if isinstance(x, Tree) and x.data in OPTION_ORDER]
            return [" ".join([f"{''.join(how)}join {self.ref(ref)}", *(self.option(o) for o in _ordered(options))])]
        if kind == "merge_stage":
            return ["merge " + ", ".join(self.ref(r) for r in c)]
        if kind == "branch_stage":
            cases = [x for x in c if x.data == "branch_case"]
            default = [x for x in c if x.data == "branch_default"]
            suffix = "".join(" " + self.option(x) for x in default)
            return self._braces("branch", cases, comments, indent, suffix,
                                lambda x: f"{x.children[0].value}: {self.expr(x.children[1])}")
        if kind == "echo_stage":
            topics = [x for x in c if isinstance(x, Token)]
            options = [x for x in c if isinstance(x, Tree)]
            return [" ".join(["echo " + ", ".join(self._topic(t) for t in topics), *(self.option(o) for o in options)])]
        if kind == "call_agent_stage":
            return [f"call agent {c[0].value}" + "".join(f" -> {self.type(t)}" for t in c[1:])]
        if kind == "agent_sink":
            return [f"to agent {c[0].value}"]
        if kind == "topic_sink":
            options = sorted(c[1:], key=lambda o: 0 if o.data == "serializer_option" else 1)
            return [" ".join([f"to topic {self._topic(c[0])}", *(self.option(o) for o in options)])]
        if kind == "stdout_sink":
            return ["to stdout"]
        if kind == "file_sink":
            return [f"to file {c[0].value}"]
        raise ValueError(f"no layout for stage '{kind}'")

    def _braces(self, word: str, items: list[Any], comments: list[Comment], indent: int, suffix: str,
                item: Callable[[Any], str]) -> list[str]:
        """`word { a, b }suffix` on one line when it fits and has no comments, else one item per line."""
        flat = f"{word} {{ {', '.join(item(x) for x in items)} }}{suffix}" if items else f"{word} {{}}{suffix}"
        if not comments and indent + len(flat) <= WIDTH:
            return [flat]
        lines = self._block(f"{word} {{", items, comments, item, " " * indent, "}" + suffix)
        return lines

    def _record_item(self, node: Any) -> str:
        if node.data == "record_field":
            return f"{node.children[0].value}: {self.expr(node.children[1])}"
        return self.expr(node.children[0])  # record_shorthand

    def _aggregation(self, node: Any) -> str:
        output, function, *args = node.children
        return f"{output.value}: {function.value}({', '.join(self.expr(a) for a in args)})"

    # ------------------------------------------------------------------ expressions
    def expr(self, node: Any) -> str:
        return self._expr(node)[0]

    def _wrap(self, node: Any, minimum: int) -> str:
        text, prec = self._expr(node)
        return f"({text})" if prec < minimum else text

    def _expr(self, node: Any) -> tuple[str, int]:
        kind = node.data
        c: list[Any] = node.children
        if kind == "or_op":
            return f"{self._wrap(c[0], 1)} or {self._wrap(c[1], 2)}", 1
        if kind == "and_op":
            return f"{self._wrap(c[0], 2)} and {self._wrap(c[1], 3)}", 2
        if kind == "not_op":
            return f"not {self._wrap(c[0], 3)}", 3
        if kind == "compare":
            return f"{self._wrap(c[0], 5)} {c[1].children[0].value} {self._wrap(c[2], 5)}", 4
        if kind in ("is_null", "is_not_null"):
            return f"{self._wrap(c[0], 5)} is {'not ' if kind == 'is_not_null' else ''}null", 4
        if kind == "arith":
            op = c[1].children[0].value
            prec = 5 if op in "+-" else 6
            return f"{self._wrap(c[0], prec)} {op} {self._wrap(c[2], prec + 1)}", prec
        if kind == "neg":
            return f"-{self._wrap(c[0], 7)}", 7
        if kind in ("string", "int", "float", "duration"):
            return str(c[0].value), 8
        if kind in ("true", "false", "null"):
            return kind, 8
        if kind == "field_path":
            return ".".join(t.value for t in c), 8
        if kind == "call":
            return f"{c[0].value}({', '.join(self.expr(a) for a in c[1:])})", 8
        if kind == "list_expr":
            return f"[{', '.join(self.expr(a) for a in c)}]", 8
        if kind == "record_expr":
            if not c:
                return "{}", 8
            return f"{{ {', '.join(self._record_item(x) for x in c)} }}", 8
        raise ValueError(f"no layout for expression '{kind}'")

    # ------------------------------------------------------------------ names
    def _word(self, node: Any) -> str:
        """The text of a rule that keeps its one keyword token (a `!rule`)."""
        return str(node.children[0].value)

    def _topic(self, token: Token) -> str:
        if token.type == "STRING":
            inner = token.value[1:-1]
            if _NAME.match(inner):
                return inner
        return str(token.value)


def _is(node: Any, rule: str) -> bool:
    return isinstance(node, Tree) and node.data == rule


def _ordered(options: list[Any]) -> list[Any]:
    return sorted(options, key=lambda o: OPTION_ORDER.get(o.data, 9))


__all__ = ["format_source", "topic_name"]
