"""The Transformer from a `.flow` parse tree to builder calls: one method per grammar rule.

Children are transformed before parents and statements in file order, so when a
statement's method runs, everything declared above it is known. Stage rules return a
`Step` (what to call on the builder handle); statement rules run the steps in order and
name the last step after the declaration (`stream large = ... | filter ...` names the
filter `large`; earlier steps get the builder's derived names). This module never
creates IR nodes: every node comes from a builder call with `loc=` set.

A mistake in one declaration is recorded and the declaration is skipped; names it would
have declared are "poisoned" so later uses of them stay quiet instead of cascading.

>>> from dataflow.lang.parser import parse
>>> text = "pipeline p { partitions 2 }\\ntopic t: str\\nstream big = t | filter length(_value) > 3\\nbig | to stdout"
>>> flow = FlowTransformer("x.flow").transform(parse(text, "x.flow"))
>>> [(n.name, str(n.loc)) for n in flow.topology().nodes()]
[('t', 'x.flow:2:1'), ('big', 'x.flow:3:18'), ('big.print', 'x.flow:4:7')]
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Sequence

from lark import Token, Tree

from ..builder import Branches, Flow, Stream, Table, WindowSpec, hopping, session, sliding, tumbling
from ..builder.flow import AGENT_PATH
from ..builder.windows import agg
from ..ir import expr as ir
from ..ir.bounds import MAX_PARTITIONS, partitions_problem, setting_problem, shown_number
from ..ir.diagnostics import Diagnostic
from ..ir.durations import format_duration
from ..ir.location import SourceLocation
from ..ir.nodes import AGGREGATE_FUNCTIONS, EMIT_MODES, SERIALIZERS, TIME_SOURCES, Aggregation
from ..ir.settings import (SETTING_NAMES, TEXT_SETTINGS, RefusedSetting, SettingError, UnknownSetting, expected_for, parse_setting,
                           suggest_setting)
from ..ir.types import ANY, RecordType, Field, Type
from .diagnostics import LangError, Silent, did_you_mean
from .expressions import (ExpressionRules, UdfInfo, check_udf_path, decimal_number, decode_string, duration_ms,
                          field_path_text, whole_number)
from .parser import gc_paused

WINDOWS: dict[str, Callable[..., WindowSpec]] = {"tumbling": tumbling, "hopping": hopping, "sliding": sliding,
                                                 "session": session}
#: names the builder's `branch(**predicates)` takes for itself
RESERVED_BRANCH_NAMES = ("name", "default", "loc")


class _Bad:
    """The value of a rule that failed (its diagnostic is already recorded)."""

    def __repr__(self) -> str:
        return "<bad>"


BAD = _Bad()


#: rules that look at failed children themselves (to poison the names they declare)
TOLERANT_RULES = frozenset({"start", "settings", "record_decl", "field_decl", "topic_decl", "udf_decl",
                            "stream_decl", "table_decl", "pipe_stmt", "branch_case"})


@dataclass
class Step:
    """One stage of a pipe: `apply(handle, name)` calls the builder and returns the next handle."""

    kind: str
    loc: SourceLocation
    apply: Callable[[Any, str | None], Any]
    needs: str = "stream"  # stream | table | any | none (a pipe's first step)
    makes_node: bool = True
    sink: bool = False
    text: str = ""  # the stage as written (canonical spacing), where a hint quotes it


@dataclass
class Ref:
    """`name`, `branches.port` or `table.changes` at the head of a pipe or in join/merge."""

    parts: list[Token]
    loc: SourceLocation


@dataclass
class TopicSource:
    """`topic orders` on the right of a declaration: read the topic as a stream or a table."""

    topic: str
    loc: SourceLocation
    bootstrap: bool = False  # `table t = topic t bootstrap`


@dataclass
class TimerSource:
    """`every 10s emit EXPR` on the right of a declaration: a record every interval."""

    interval: str
    value: ir.Expr
    loc: SourceLocation


@dataclass
class Declared:
    kind: str  # stream | table | branch
    handle: Any
    loc: SourceLocation
    ports: tuple[str, ...] = ()


@dataclass
class Option:
    """A keyword option such as `partitions 8` or `grace 10s`."""

    name: str
    value: Any
    loc: SourceLocation


@dataclass
class TopicInfo:
    loc: SourceLocation
    value_type: Type = ANY


class FlowTransformer(ExpressionRules):
    """Builds a `Flow` from a parse tree; `diagnostics` lists every mistake found."""

    def __init__(self, file: str, overrides: dict[str, Any] | None = None):
        super().__init__(visit_tokens=False)
        self.file = file
        self.overrides = dict(overrides or {})
        self.flow = Flow("pipeline")
        self.diagnostics: list[Diagnostic] = []
        self.records: dict[str, tuple[RecordType, SourceLocation]] = {}
        self.udfs: dict[str, UdfInfo] = {}
        self.topics: dict[str, TopicInfo] = {}
        self.declared: dict[str, Declared] = {}
        self.topic_streams: dict[str, Stream] = {}
        self.poisoned: set[str] = set()
        self._methods: dict[str, tuple[Callable[[Any, list[Any]], Any], bool]] = {}

    def transform(self, tree: Tree) -> Any:
        """The Flow of a parse tree: children first, in file order, then the method named after
        the rule, called with (meta, children).

        The same protocol as lark's `Transformer` with `v_args(meta=True)`, in a leaner loop
        (lark re-wraps a `v_args` method on every call, which was a third of the time).
        """
        # One statement at a time, so a statement too deep for Python's stack fails alone.
        with gc_paused():
            return self._apply_rule(tree, [self._statement(c) for c in tree.children])

    def _statement(self, tree: Tree) -> Any:
        try:
            return self._transform(tree)
        except RecursionError:
            self.diagnostics.append(Diagnostic("this declaration nests too deeply", self._loc(tree.meta),
                                               "split long expressions into several steps"))
            return BAD

    def _transform(self, tree: Tree) -> Any:
        return self._apply_rule(tree, [self._transform(c) if type(c) is Tree else c for c in tree.children])

    def _apply_rule(self, tree: Tree, children: list[Any]) -> Any:
        """A rule whose children failed is skipped (unless it handles that itself); a LangError
        becomes a recorded diagnostic and the rule's value is BAD."""
        # Keyed by the rule token itself: lark shares it between trees, so lookups hit by identity.
        entry = self._methods.get(tree.data)
        if entry is None:
            name = str(tree.data)
            method = getattr(self, name, None) or functools.partial(self.__default__, name)
            entry = self._methods[tree.data] = (method, name in TOLERANT_RULES)
        method, tolerant = entry
        if not tolerant:
            for child in children:
                if child is BAD:
                    return BAD
        try:
            return method(tree.meta, children)
        except LangError as e:
            self.diagnostics.append(e.diagnostic)
        except Silent:
            pass
        return BAD

    def __default__(self, data: str, meta: Any, children: list[Any]) -> Any:  # type: ignore[override]
        raise RuntimeError(f"internal error: the grammar rule '{data}' has no transformer method")

    # ================================================================== file and header
    def start(self, meta: Any, children: list[Any]) -> Flow:
        return self.flow

    def pipeline_decl(self, meta: Any, children: list[Any]) -> None:
        name_loc, name = children[0]
        settings: list[Option] = children[1] if len(children) > 1 else []
        values: dict[str, Any] = {}
        for option in settings:
            if option.name in values:
                self.diagnostics.append(Diagnostic(f"setting '{option.name}' is given twice", option.loc))
                continue
            problem = setting_problem(option.name, option.value)  # parsed and checked by `setting`
            if problem:
                self.diagnostics.append(Diagnostic(problem, option.loc))
                continue
            values[option.name] = option.value
        try:
            self.flow = Flow(name, **values)
        except ValueError as e:
            raise LangError(str(e).replace(f"{name!r}", f"'{name}'"), name_loc) from None
        self._apply_overrides(self._loc(meta))

    def _apply_overrides(self, loc: SourceLocation) -> None:
        # Callers that know where an override came from (the CLI: a flag, a variable) check it
        # first and say so; these diagnostics are for Python callers of `parse_flow`.
        for key, value in self.overrides.items():
            try:
                self.flow.configure(**{key: value})  # refuses a value past its bound, too
            except UnknownSetting:
                self.diagnostics.append(Diagnostic(f"unknown setting '{key}' (an override)", loc, suggest_setting(key)))
            except (ValueError, TypeError) as e:
                self.diagnostics.append(Diagnostic(f"{e} (an override)", loc))

    def pipeline_name(self, meta: Any, children: list[Token]) -> tuple[SourceLocation, str]:
        token = children[0]
        text = decode_string(token, self.file) if token.type == "STRING" else token.value
        return self._loc(token), text

    def settings(self, meta: Any, children: list[Any]) -> list[Option]:
        return [c for c in children if c is not BAD]

    def setting(self, meta: Any, children: list[Any]) -> Option:
        name_token, value = children
        name = name_token.value
        loc = self._loc(meta)
        if name not in SETTING_NAMES:
            raise LangError(f"unknown setting '{name}'", self._loc(name_token), suggest_setting(name))
        return Option(name, _setting_value(name, value, self.file, loc), loc)

    def setting_value(self, meta: Any, children: list[Token]) -> Token:
        return children[0]

    # ================================================================== records, topics, udfs
    def record_decl(self, meta: Any, children: list[Any]) -> None:
        name_token, *items = children
        name = name_token.value
        if any(item is BAD for item in items):
            self.poisoned.add(name)
            return
        try:
            self._unique_type_name(name_token)
            seen: dict[str, SourceLocation] = {}
            for field_, loc in items:
                if field_.name in seen:
                    raise LangError(f"field '{field_.name}' is declared twice in record '{name}'", loc,
                                    f"first declared at line {seen[field_.name].line}")
                seen[field_.name] = loc
        except LangError as e:
            self.diagnostics.append(e.diagnostic)
            self.poisoned.add(name)
            return
        self.records[name] = (RecordType(name, tuple(f for f, _ in items)), self._loc(name_token))

    def _unique_type_name(self, token: Token) -> None:
        name = token.value
        if name in self.records:
            raise LangError(f"record '{name}' is declared twice", self._loc(token),
                            f"first declared at line {self.records[name][1].line}")
        if name in ("str", "int", "float", "bool", "bytes", "timestamp", "any", "null"):
            raise LangError(f"'{name}' is a built-in type; choose another record name", self._loc(token))

    def field_decl(self, meta: Any, children: list[Any]) -> Any:
        name, type_ = children
        if type_ is BAD:
            return BAD
        return Field(name.value, type_), self._loc(name)

    def topic_decl(self, meta: Any, children: list[Any]) -> None:
        name_token, *rest = children
        name = _topic_text(name_token, self.file)
        if any(c is BAD for c in rest):
            self.poisoned.add(name)
            return
        try:
            self._declare_topic(meta, name_token, name, rest)
        except LangError as e:
            self.diagnostics.append(e.diagnostic)
            self.poisoned.add(name)

    def _declare_topic(self, meta: Any, name_token: Token, name: str, rest: list[Any]) -> None:
        if name in self.topics:
            raise LangError(f"topic '{name}' is declared twice", self._loc(name_token),
                            f"first declared at line {self.topics[name].loc.line}")
        value: Type | None = None
        options: dict[str, Option] = {}
        for item in rest:
            if isinstance(item, Type):
                value = item
                continue
            _once(options, item)
        timestamp = options.get("event_time")
        if timestamp is not None and isinstance(value, RecordType):
            _check_path(value, timestamp.value, timestamp.loc)
        self.flow.topic(
            name,
            key=options["key"].value if "key" in options else None,
            value=value,
            partitions=options["partitions"].value if "partitions" in options else None,
            serializer=options["serializer"].value if "serializer" in options else "json",
            key_serializer=options["key_serializer"].value if "key_serializer" in options else "json",
            timestamp=timestamp.value if timestamp else None,
        )
        self.topics[name] = TopicInfo(self._loc(meta), value or ANY)

    def topic_key(self, meta: Any, children: list[Any]) -> Option:
        return Option("key", children[0], self._loc(meta))

    def partitions_option(self, meta: Any, children: list[Token]) -> Option:
        text = children[0].value
        digits = len(text.lstrip("0"))  # int() refuses more than 4,300 digits: compare lengths first
        count = int(text) if digits <= len(str(MAX_PARTITIONS)) else None
        problem = (partitions_problem(count) if count is not None
                   else f"partitions must be between 1 and {MAX_PARTITIONS}, not {shown_number(text)}")
        if problem:
            hint = "" if count is not None and count < 1 else "Kafka's guidance is a few thousand partitions per broker"
            raise LangError(problem, self._loc(children[0]), hint)
        return Option("partitions", count, self._loc(meta))

    def serializer_option(self, meta: Any, children: list[Token]) -> Option:
        return Option("serializer", self._serializer(children[0]), self._loc(meta))

    def key_serializer_option(self, meta: Any, children: list[Token]) -> Option:
        return Option("key_serializer", self._serializer(children[0]), self._loc(meta))

    def _serializer(self, token: Token) -> str:
        if token.value not in SERIALIZERS:
            raise LangError(f"unknown serializer '{token.value}'", self._loc(token),
                            did_you_mean(token.value, SERIALIZERS, "serializers are: " + ", ".join(SERIALIZERS)))
        return str(token.value)

    def event_time_option(self, meta: Any, children: list[ir.Expr]) -> Option:
        loc = self._loc(meta)
        return Option("event_time", field_path_text(children[0], loc, "event_time"), loc)

    def udf_decl(self, meta: Any, children: list[Any]) -> None:
        name_token, *types, path_token = children
        name = name_token.value
        if any(t is BAD for t in types):
            self.poisoned.add(name)
            return
        try:
            if name in self.udfs:
                raise LangError(f"udf '{name}' is declared twice", self._loc(name_token),
                                f"first declared at line {self.udfs[name].loc.line}")
            from ..ir.functions import BUILTINS

            if name in BUILTINS or name == "udf":
                raise LangError(f"udf '{name}' would hide the built-in function {name}()", self._loc(name_token),
                                "choose another name")
            path = decode_string(path_token, self.file)
            check_udf_path(path, self._loc(path_token))
        except LangError as e:
            self.diagnostics.append(e.diagnostic)
            self.poisoned.add(name)
            return
        *params, returns = types
        self.udfs[name] = UdfInfo(name, path, tuple(params), returns, self._loc(meta))

    # ================================================================== declarations of streams and tables
    def stream_decl(self, meta: Any, children: list[Any]) -> None:
        self._declaration("stream", meta, children)

    def table_decl(self, meta: Any, children: list[Any]) -> None:
        self._declaration("table", meta, children)

    def pipe_stmt(self, meta: Any, children: list[Any]) -> None:
        if any(c is BAD for c in children):
            return
        try:
            result, _ = self._run(children[0], children[1:], None, None)
        except LangError as e:
            self.diagnostics.append(e.diagnostic)
            return
        except Silent:
            return
        if isinstance(result, Branches):
            self.diagnostics.append(Diagnostic("a branch needs a name to be used", children[-1].loc,
                                               "declare it: stream routed = ... | branch { ... }; "
                                               "then use routed.NAME"))

    def _declaration(self, kind: str, meta: Any, children: list[Any]) -> None:
        name_token, source, *stages = children
        name = name_token.value
        if source is BAD or any(s is BAD for s in stages):
            self.poisoned.add(name)
            return
        try:
            if name in self.declared:
                raise LangError(f"'{name}' is declared twice", self._loc(name_token),
                                f"first declared at line {self.declared[name].loc.line}")
            _, named = self._run(source, stages, name, kind)
            self.declared[name] = self._declared(kind, name_token, named, stages)
        except LangError as e:
            self.diagnostics.append(e.diagnostic)
            self.poisoned.add(name)
        except Silent:
            self.poisoned.add(name)

    def _declared(self, kind: str, name_token: Token, handle: Any, stages: list[Step]) -> Declared:
        loc = self._loc(name_token)
        name = name_token.value
        if isinstance(handle, Branches):
            if kind == "table":
                raise LangError(f"'{name}' is declared as a table, but its pipe ends in a branch", loc,
                                f"write `stream {name} = ...`")
            return Declared("branch", handle, loc, tuple(str(output.port) for output in handle))
        if kind == "table" and not isinstance(handle, Table):
            raise LangError(f"'{name}' is declared as a table, but its pipe makes a stream", loc,
                            f"end it with '| to_table' or an aggregate, or write `stream {name} = ...`")
        if kind == "stream" and isinstance(handle, Table):
            raise LangError(f"'{name}' is declared as a stream, but its pipe makes a table", loc,
                            f"write `table {name} = ...`, or end the pipe with '| changes'")
        return Declared(kind, handle, loc)

    # ------------------------------------------------------------------ running a pipe
    def _run(self, source: Ref | TopicSource | TimerSource, stages: list[Step], name: str | None,
             kind: str | None) -> tuple[Any, Any]:
        """Apply the steps; returns (last handle, handle of the named step)."""
        handle: Any
        if isinstance(source, TopicSource):
            handle, steps = None, [self._topic_step(source, kind), *stages]
        elif isinstance(source, TimerSource):
            handle, steps = None, [self._timer_step(source, name), *stages]
        else:
            handle, prefix = self._resolve(source)
            steps = [*prefix, *stages]
        for i, step in enumerate(steps[:-1]):
            if step.sink:
                raise LangError(f"nothing can follow a sink; '{steps[i + 1].kind}' comes after it",
                                steps[i + 1].loc, "start another pipe from a named stream instead")
            if step.kind == "branch":
                raise LangError("a branch ends its pipe", steps[i + 1].loc,
                                "name it (stream routed = ... | branch {...}) and continue from routed.NAME")
        target = max((i for i, s in enumerate(steps) if s.makes_node and not s.sink), default=None)
        if name is not None and target is None:
            hint = "add a step, or use the stream by its own name"
            if kind == "table" and isinstance(source, Ref) and len(source.parts) == 1 \
                    and source.parts[0].value in self.topics:
                hint = f"to read the topic as a table, write `table {name} = topic {source.parts[0].value}`"
            raise LangError(f"'{name}' would only be another name for '{_ref_text(source)}'", source.loc, hint)
        named = handle
        for i, step in enumerate(steps):
            self._check_input(step, handle)
            try:
                handle = step.apply(handle, name if i == target else None)
            except (ValueError, KeyError) as e:
                first_stage = len(steps) - len(stages)
                raise _builder_error(e, step.loc, lambda base: self._naming_hint(
                    source, stages[:i - first_stage] if i >= first_stage else None, step, steps[i + 1:],
                    name, kind, base)) from None
            if i == target:
                named = handle
        return handle, named

    def _check_input(self, step: Step, handle: Any) -> None:
        if step.needs == "stream" and isinstance(handle, Table):
            raise LangError(f"'{step.kind}' needs a stream, but its input is a table", step.loc,
                            "insert '| changes' to use the stream of the table's updates")
        if step.needs == "table" and not isinstance(handle, Table):
            raise LangError(f"'{step.kind}' needs a table, but its input is a stream", step.loc,
                            "make a table with '| to_table' or an aggregate")

    def _naming_hint(self, source: Ref | TopicSource | TimerSource, before: list[Step] | None, step: Step,
                     after: list[Step], decl: str | None, decl_kind: str | None, base: str) -> str:
        """What to write so that `step`, whose derived name clashes, gets its own: end a stream
        declaration at it and continue from that name, e.g. for `table b = by_user | window
        session 30s | aggregate {...}`: `stream b_window = by_user | window session 30s`, then
        `table b = b_window | aggregate ...`."""
        stage = step.text or f"{step.kind} ..."
        head = _ref_text(source) if before == [] else f"{_ref_text(source)} | ..." if before else "..."
        new = f"{decl}_{step.kind}" if decl else base.replace(".", "_") + "_2"
        while new in self.declared or new in self.flow._topology:
            new += "_2"
        hint = f"name the {step.kind.replace('_', ' ')}: `stream {new} = {head} | {stage}`"
        if after:
            rest = f"{new} | {after[0].kind} ..."
            return hint + f", then `{decl_kind} {decl} = {rest}`" if decl else hint + f", then `{rest}`"
        return hint
    def _topic_step(self, source: TopicSource, kind: str | None) -> Step:
        self._topic(source.topic, source.loc)

        if source.bootstrap and kind != "table":
            raise LangError("'bootstrap' applies to a table read from a topic", source.loc,
                            f"declare it as one: table NAME = topic {source.topic} bootstrap")

        def apply(_: Any, name: str | None) -> Any:
            if kind == "table":
                return self.flow.table(source.topic, bootstrap=source.bootstrap, name=name, loc=source.loc)
            return self.flow.source(source.topic, name=name, loc=source.loc)

        return Step("topic", source.loc, apply, needs="none")

    def _timer_step(self, source: TimerSource, declared: str | None) -> Step:
        """A timer is named by its declaration; when steps follow it, after it: `hb.every_10s`."""

        def apply(_: Any, name: str | None) -> Any:
            if name is None and declared is not None:
                name = f"{declared}.every_{source.interval}"
            return self.flow.every(source.interval, value=source.value, name=name, loc=source.loc)

        return Step("every", source.loc, apply, needs="none")

    def _topic(self, topic: str, loc: SourceLocation) -> TopicInfo:
        if topic in self.topics:
            return self.topics[topic]
        if topic in self.poisoned:
            raise Silent(topic)
        raise LangError(f"unknown topic '{topic}'", loc,
                        did_you_mean(topic, self.topics, f"declare it: topic {_quote_topic(topic)}"))

    def _resolve(self, ref: Ref) -> tuple[Any, list[Step]]:
        """The handle a reference names, and the steps its `.changes` suffix adds."""
        first, *rest = ref.parts
        name = first.value
        if name in self.declared:
            declared = self.declared[name]
            handle = declared.handle
            if declared.kind == "branch":
                if not rest:
                    raise LangError(f"'{name}' is a branch; continue from one of its outputs", self._loc(first),
                                    "outputs are: " + ", ".join(f"{name}.{p}" for p in declared.ports))
                port = rest.pop(0)
                if port.value not in declared.ports:
                    raise LangError(f"branch '{name}' has no output '{port.value}'", self._loc(port),
                                    did_you_mean(port.value, declared.ports,
                                                 "outputs are: " + ", ".join(declared.ports)))
                handle = handle[port.value]
        elif name in self.poisoned:
            raise Silent(name)
        elif name in self.topics:
            handle = self._topic_stream(name)
        else:
            raise LangError(f"unknown stream, table or topic '{name}'", self._loc(first),
                            did_you_mean(name, [*self.declared, *self.topics, *self.poisoned]))
        steps = []
        for part in rest:
            if part.value != "changes":
                raise LangError(f"'{_ref_text(ref)}' is not known: '{name}' has no '{part.value}'", self._loc(part),
                                "tables have '.changes'; branches have their outputs")
            steps.append(self._changes_step(self._loc(part)))
        return handle, steps

    def _topic_stream(self, topic: str) -> Stream:
        """A topic used by name is read as a stream, once: every use shares that source."""
        if topic not in self.topic_streams:
            try:
                self.topic_streams[topic] = self.flow.source(topic, loc=self.topics[topic].loc)
            except ValueError as e:
                raise _builder_error(e, self.topics[topic].loc) from None
        return self.topic_streams[topic]

    def _handle(self, ref: Ref) -> Any:
        """A join or merge input: the named handle with its `.changes` applied."""
        handle, steps = self._resolve(ref)
        for step in steps:
            self._check_input(step, handle)
            handle = step.apply(handle, None)
        return handle

    def _changes_step(self, loc: SourceLocation) -> Step:
        return Step("changes", loc, lambda h, name: h.changes(name=name, loc=loc), needs="table")

    # ================================================================== pipe heads
    def ref(self, meta: Any, children: list[Token]) -> Ref:
        return Ref(list(children), self._loc(meta))

    def topic_source(self, meta: Any, children: list[Token]) -> TopicSource:
        return TopicSource(_topic_text(children[0], self.file), self._loc(meta), len(children) > 1)

    def bootstrap_option(self, meta: Any, children: list[Any]) -> bool:
        return True

    def timer_source(self, meta: Any, children: list[Any]) -> TimerSource:
        interval, *value = children
        loc = self._loc(meta)
        if not value:
            raise LangError(f"'every {interval.value}' needs a value to emit", loc,
                            f"every {interval.value} emit {{ at: now() }}")
        return TimerSource(format_duration(duration_ms(interval, self.file)), value[0], loc)

    def timer_emit(self, meta: Any, children: list[ir.Expr]) -> ir.Expr:
        return children[0]

    # ================================================================== stages
    def filter_stage(self, meta: Any, children: list[Any]) -> Step:
        (predicate,) = children
        loc = self._loc(meta)
        return Step("filter", loc, lambda h, name: h.filter(predicate, name=name, loc=loc))

    def map_stage(self, meta: Any, children: list[Any]) -> Step:
        (value,) = children
        loc = self._loc(meta)
        return Step("map", loc, lambda h, name: h.map(value, name=name, loc=loc))

    def flat_map_stage(self, meta: Any, children: list[Any]) -> Step:
        (value,) = children
        loc = self._loc(meta)
        return Step("flat_map", loc, lambda h, name: h.flat_map(value, name=name, loc=loc))

    def group_by_stage(self, meta: Any, children: list[Any]) -> Step:
        key, *options = children
        loc = self._loc(meta)
        partitions = options[0].value if options else None
        text = f"group_by {ir.render(key)}" + (f" partitions {partitions}" if partitions else "")
        return Step("group_by", loc, lambda h, name: h.group_by(key, name=name, partitions=partitions, loc=loc),
                    text=text)

    def select_key_stage(self, meta: Any, children: list[Any]) -> Step:
        (key,) = children
        loc = self._loc(meta)
        return Step("select_key", loc, lambda h, name: h.select_key(key, name=name, loc=loc))

    def event_time_stage(self, meta: Any, children: list[Any]) -> Step:
        (time,) = children
        loc = self._loc(meta)
        return Step("event_time", loc, lambda h, name: h.event_time(time, name=name, loc=loc))

    def through_stage(self, meta: Any, children: list[Any]) -> Step:
        topic_token, *rest = children
        loc = self._loc(meta)
        topic = _topic_text(topic_token, self.file)
        self._topic(topic, self._loc(topic_token))
        options: dict[str, Option] = {}
        for option in rest:
            _once(options, option)
        partitions = options["partitions"].value if "partitions" in options else None
        serializer = options["serializer"].value if "serializer" in options else "json"
        return Step("through", loc, lambda h, name: h.through(topic, name=name, partitions=partitions,
                                                              serializer=serializer, loc=loc))

    # ------------------------------------------------------------------ windows
    def window_stage(self, meta: Any, children: list[Any]) -> Step:
        kind_token, size_token, *rest = children
        loc = self._loc(meta)
        kind = kind_token.value
        if kind not in WINDOWS:
            raise LangError(f"unknown window '{kind}'", self._loc(kind_token),
                            did_you_mean(kind, WINDOWS, "windows are: tumbling, hopping, sliding, session"))
        options: dict[str, Option] = {}
        for option in rest:
            _once(options, option)
        step = options.get("step")
        if kind == "hopping" and step is None:
            raise LangError("a hopping window needs a step", loc, f"window hopping {size_token.value} step 1m")
        if kind != "hopping" and step is not None:
            raise LangError(f"only hopping windows take a step; a {kind} window does not", step.loc)
        time = options["time"].value if "time" in options else None
        on = options["on"].value if "on" in options else None
        if on is not None and time in ("message", "processing"):
            raise LangError(f"'on {on}' sets event time, which contradicts 'time {time}'", options["on"].loc,
                            "drop one of them")
        kwargs: dict[str, Any] = {"on": on, "time": time}
        for key in ("grace", "expires"):
            if key in options:
                kwargs[key] = format_duration(options[key].value)
        size = format_duration(duration_ms(size_token, self.file))
        try:
            if kind == "hopping":
                spec = hopping(size, format_duration(step.value), **kwargs)  # type: ignore[union-attr]
            else:
                spec = WINDOWS[kind](size, **kwargs)
        except ValueError as e:
            raise LangError(str(e).replace("on='ts'", "on ts"), loc) from None
        text = " ".join([f"window {kind} {size_token.value}", *(_option_text(o) for o in rest)])
        return Step("window", loc, lambda h, name: h.window(spec, name=name, loc=loc), text=text)

    def _choice(self, name: str, what: str, allowed: Sequence[str], hint: str, meta: Any,
                children: list[Token]) -> Option:
        """An option whose value is one keyword of `allowed`."""
        value = children[0].value
        if value not in allowed:
            raise LangError(f"unknown {what} '{value}'", self._loc(children[0]), did_you_mean(value, allowed, hint))
        return Option(name, value, self._loc(meta))

    def _duration_option(self, name: str, meta: Any, children: list[Token]) -> Option:
        return Option(name, duration_ms(children[0], self.file), self._loc(meta))

    def window_step(self, meta: Any, children: list[Token]) -> Option:
        return self._duration_option("step", meta, children)

    def window_grace(self, meta: Any, children: list[Token]) -> Option:
        return self._duration_option("grace", meta, children)

    def window_expires(self, meta: Any, children: list[Token]) -> Option:
        return self._duration_option("expires", meta, children)

    def window_on(self, meta: Any, children: list[ir.Expr]) -> Option:
        loc = self._loc(meta)
        return Option("on", field_path_text(children[0], loc, "a window's 'on'"), loc)

    def window_time(self, meta: Any, children: list[Token]) -> Option:
        return self._choice("time", "time", TIME_SOURCES, "time is event, message or processing", meta, children)

    # ------------------------------------------------------------------ aggregation
    def aggregate_stage(self, meta: Any, children: list[Any]) -> Step:
        loc = self._loc(meta)
        emit = "changes"
        items: dict[str, Aggregation] = {}
        for child in children:
            if isinstance(child, Option):
                emit = child.value
                continue
            output, aggregation, output_loc = child
            if output in items:
                raise LangError(f"aggregation '{output}' is given twice", output_loc)
            items[output] = aggregation
        if not items:
            raise LangError("aggregate needs at least one aggregation", loc, "aggregate { n: count() }")
        return Step("aggregate", loc, lambda h, name: h.aggregate(items, name=name, emit=emit, loc=loc))

    def aggregation(self, meta: Any, children: list[Any]) -> tuple[str, Aggregation, SourceLocation]:
        output_token, function_token, *args = children
        function = function_token.value
        where = self._loc(function_token)
        if function not in AGGREGATE_FUNCTIONS:
            raise LangError(f"unknown aggregation '{function}'", where,
                            did_you_mean(function, AGGREGATE_FUNCTIONS,
                                         "aggregations are: " + ", ".join(AGGREGATE_FUNCTIONS)))
        call = self._loc(meta)
        if function == "count":
            _arity(function, args, 0, 0, call, "count()")
            made = agg.count()
        elif function in ("sum", "min", "max", "avg"):
            _arity(function, args, 1, 1, call, f"{function}(amount)")
            made = getattr(agg, function)(args[0])
        elif function in ("collect", "set", "latest"):
            _arity(function, args, 0, 1, call, f"{function}() or {function}(field)")
            made = getattr(agg, function)(args[0] if args else None)
        else:
            made = self._reduce(args, call)
        return str(output_token.value), made, self._loc(output_token)

    def _reduce(self, args: list[ir.Expr], loc: SourceLocation) -> Aggregation:
        usage = 'reduce("mypkg.reducers:longest", word) or reduce("...", field, initial)'
        _arity("reduce", args, 1, 3, loc, usage)
        path = args[0]
        if not isinstance(path, ir.Literal) or not isinstance(path.value, str):
            raise LangError("reduce() takes the reducer's import path first", path.loc or loc, usage)
        check_udf_path(path.value, path.loc or loc)
        initial = None
        if len(args) == 3:
            if not isinstance(args[2], ir.Literal):
                raise LangError("the initial value of reduce() must be a constant", args[2].loc or loc, usage)
            initial = args[2].value
        return agg.reduce(path.value, args[1] if len(args) > 1 else None, initial=initial)

    def emit_option(self, meta: Any, children: list[Token]) -> Option:
        return self._choice("emit", "emit mode", EMIT_MODES, "emit changes or emit final", meta, children)

    # ------------------------------------------------------------------ tables
    def to_table_stage(self, meta: Any, children: list[Any]) -> Step:
        loc = self._loc(meta)
        return Step("to_table", loc, lambda h, name: h.to_table(name, loc=loc))

    def changes_stage(self, meta: Any, children: list[Any]) -> Step:
        return self._changes_step(self._loc(meta))

    # ------------------------------------------------------------------ joins, merge, branch, echo
    def join_stage(self, meta: Any, children: list[Any]) -> Step:
        loc = self._loc(meta)
        how = "inner"
        if isinstance(children[0], str):
            how = children.pop(0)
        other, *rest = children
        options: dict[str, Option] = {}
        for option in rest:
            _once(options, option)
        within = options.get("within")
        on = options.get("on")
        # `_key` as a join key is the key the records already have: no re-key
        left_key, right_key, condition = on.value if on is not None else (None, None, None)
        left_key, right_key = (None if _is_key(k) else k for k in (left_key, right_key))

        def apply(h: Any, name: str | None) -> Any:
            right = self._handle(other)
            if isinstance(h, Table):
                if not isinstance(right, Table):
                    raise LangError("a table can only join another table", other.loc,
                                    "put the stream on the left: stream | join table")
                if within is not None:
                    raise LangError("'within' is for stream-stream joins", within.loc)
                if (left_key is not None or right_key is not None) and on is not None:
                    raise LangError("tables are joined on their keys; 'on' re-keys a stream", on.loc,
                                    "re-key the table's input before it becomes a table; "
                                    "a condition alone is written 'on _key and CONDITION'")
                return h.join(right, how=how, condition=condition, name=name, loc=loc)
            if within is not None and isinstance(right, Table):
                raise LangError("'within' is for stream-stream joins; a table joins its latest value", within.loc)
            if right_key is not None and isinstance(right, Table):
                raise LangError("a table is joined on its own key; only a stream can be re-keyed with '= key'",
                                on.loc)  # type: ignore[union-attr]
            return h.join(right, how=how, within=format_duration(within.value) if within else None,
                          on=left_key, right_on=right_key, condition=condition, name=name, loc=loc)

        return Step(f"{how} join" if how != "inner" else "join", loc, apply, needs="any")

    def join_how(self, meta: Any, children: list[Token]) -> str:
        return str(children[0].value)

    def join_within(self, meta: Any, children: list[Token]) -> Option:
        return Option("within", duration_ms(children[0], self.file), self._loc(meta))

    def join_on(self, meta: Any, children: list[Any]) -> Option:
        loc = self._loc(meta)
        condition = children.pop().value if isinstance(children[-1], Option) else None
        left = children[0]
        right = children[1] if len(children) > 1 else None
        if isinstance(left, ir.Binary) and left.op == "==" and right is None:
            raise LangError("join keys are written 'on left_key = right_key', not with '=='", loc,
                            f"on {ir.render(left.left)} = {ir.render(left.right)}"
                            + (f" and {ir.render(condition)}" if condition is not None else ""))
        return Option("on", (left, right, condition), loc)

    def join_condition(self, meta: Any, children: list[ir.Expr]) -> Option:
        return Option("condition", children[0], self._loc(meta))

    def merge_stage(self, meta: Any, children: list[Ref]) -> Step:
        loc = self._loc(meta)

        def apply(h: Any, name: str | None) -> Any:
            others = [self._handle(r) for r in children]
            for ref, other in zip(children, others):
                if isinstance(other, Table):
                    raise LangError(f"'{_ref_text(ref)}' is a table; merge takes streams", ref.loc,
                                    f"use {_ref_text(ref)}.changes")
            return h.merge(*others, name=name, loc=loc)

        return Step("merge", loc, apply)

    def branch_stage(self, meta: Any, children: list[Any]) -> Step:
        loc = self._loc(meta)
        cases: dict[str, ir.Expr] = {}
        default: str | None = None
        for child in children:
            if isinstance(child, Option):
                default = child.value
                if default in cases:
                    raise LangError(f"the default branch '{default}' has the name of another branch", child.loc)
                if default in RESERVED_BRANCH_NAMES:
                    raise LangError(f"a branch cannot be called '{default}'", child.loc, "choose another name")
                continue
            case, predicate, case_loc = child
            if case in cases:
                raise LangError(f"branch '{case}' is given twice", case_loc)
            if case in RESERVED_BRANCH_NAMES:
                raise LangError(f"a branch cannot be called '{case}'", case_loc, "choose another name")
            cases[case] = predicate
        if not cases:
            raise LangError("branch needs at least one case", loc, "branch { large: amount > 1000 }")
        return Step("branch", loc, lambda h, name: h.branch(name=name, default=default, loc=loc, **cases))

    def branch_case(self, meta: Any, children: list[Any]) -> Any:
        name, predicate = children
        if predicate is BAD:
            return BAD
        return str(name.value), predicate, self._loc(name)

    def branch_default(self, meta: Any, children: list[Token]) -> Option:
        return Option("default", str(children[0].value), self._loc(meta))

    def echo_stage(self, meta: Any, children: list[Any]) -> Step:
        loc = self._loc(meta)
        serializer = "json"
        topics = []
        for child in children:
            if isinstance(child, Option):
                serializer = child.value
                continue
            topic = _topic_text(child, self.file)
            self._topic(topic, self._loc(child))
            topics.append(topic)
        return Step("echo", loc, lambda h, name: h.echo(*topics, name=name, serializer=serializer, loc=loc))

    def call_agent_stage(self, meta: Any, children: list[Any]) -> Step:
        path_token, *returns = children
        loc = self._loc(meta)
        path = self._agent_path(path_token)
        output = returns[0] if returns else None
        return Step("call agent", loc, lambda h, name: h.call_agent(path, output=output, name=name, loc=loc))

    def _agent_path(self, token: Token) -> str:
        path = decode_string(token, self.file)
        if not AGENT_PATH.match(path):
            raise LangError(f"'{path}' is not an agent's import path", self._loc(token),
                            'write it as "package.module:agent"')
        return path

    # ------------------------------------------------------------------ sinks
    def topic_sink(self, meta: Any, children: list[Any]) -> Step:
        topic_token, *rest = children
        loc = self._loc(meta)
        topic = _topic_text(topic_token, self.file)
        self._topic(topic, self._loc(topic_token))
        options: dict[str, Option] = {}
        for option in rest:
            _once(options, option)
        kwargs = {k: options[k].value for k in ("serializer", "partitions") if k in options}
        return Step("to topic", loc, lambda h, name: h.to(topic, loc=loc, **kwargs), needs="any",
                    makes_node=False, sink=True)

    def stdout_sink(self, meta: Any, children: list[Any]) -> Step:
        loc = self._loc(meta)

        def apply(h: Any, name: str | None) -> None:
            (h.changes(loc=loc) if isinstance(h, Table) else h).print(loc=loc)

        return Step("to stdout", loc, apply, needs="any", makes_node=False, sink=True)

    def file_sink(self, meta: Any, children: list[Token]) -> Step:
        loc = self._loc(meta)
        path = decode_string(children[0], self.file)
        if not path:
            raise LangError("the file name is empty", self._loc(children[0]))

        def apply(h: Any, name: str | None) -> None:
            (h.changes(loc=loc) if isinstance(h, Table) else h).to_file(path, loc=loc)

        return Step("to file", loc, apply, needs="any", makes_node=False, sink=True)

    def agent_sink(self, meta: Any, children: list[Token]) -> Step:
        loc = self._loc(meta)
        path = self._agent_path(children[0])

        def apply(h: Any, name: str | None) -> None:
            (h.changes(loc=loc) if isinstance(h, Table) else h).to_agent(path, loc=loc)

        return Step("to agent", loc, apply, needs="any", makes_node=False, sink=True)


# ====================================================================== helpers


def _is_key(e: ir.Expr | None) -> bool:
    return isinstance(e, ir.Meta) and e.name == "key"


def _once(options: dict[str, Option], option: Option) -> None:
    if option.name in options:
        raise LangError(f"'{option.name}' is given twice", option.loc,
                        f"first given at line {options[option.name].loc.line}")
    options[option.name] = option


def _arity(function: str, args: list[Any], low: int, high: int, loc: SourceLocation, usage: str) -> None:
    if low <= len(args) <= high:
        return
    want = str(low) if low == high else f"{low} to {high}"
    raise LangError(f"{function}() takes {want} argument{'s' if want != '1' else ''}, got {len(args)}", loc, usage)


def _check_path(record: RecordType, path: str, loc: SourceLocation) -> None:
    current: Type = record
    for part in path.split("."):
        if not isinstance(current, RecordType):
            return
        found = current.field(part)
        if found is None:
            raise LangError(f"unknown field '{part}' in {current.name}", loc,
                            did_you_mean(part, current.field_names, "fields are: " + ", ".join(current.field_names)))
        current = found.type


def _topic_text(token: Token, file: str) -> str:
    return decode_string(token, file) if token.type == "STRING" else str(token.value)


def _quote_topic(topic: str) -> str:
    from .fmt import topic_name

    return topic_name(topic)


def _option_text(option: Option) -> str:
    """A window option as `dataflow fmt` writes it: `grace 10s`, `on ts`, `time processing`."""
    value = option.value
    return f"{option.name} {format_duration(value) if isinstance(value, int) else value}"


def _ref_text(ref: Ref | TopicSource | TimerSource) -> str:
    if isinstance(ref, TopicSource):
        return f"topic {ref.topic}"
    if isinstance(ref, TimerSource):
        return f"every {ref.interval}"
    return ".".join(t.value for t in ref.parts)


def _setting_value(name: str, token: Token, file: str, loc: SourceLocation) -> Any:
    """A setting's value from its literal, parsed by the one settings parser (`ir.settings`).

    The literal's kind carries meaning: `8` is a number, `500ms` a duration, `true` a bool, and
    a quoted string is text, so `partitions "8"` is refused rather than read as 8.
    """
    text = token.value
    if token.type == "STRING":
        if name not in TEXT_SETTINGS:
            raise LangError(f"setting '{name}' must be {expected_for(name)}, not a string", loc)
        value: Any = decode_string(token, file)
    elif token.type == "INT":
        value = whole_number(token, file)
    elif token.type == "FLOAT":
        value = decimal_number(token, file)
    elif token.type == "DURATION":
        value = timedelta(milliseconds=duration_ms(token, file))
    elif text in ("true", "false"):
        value = text == "true"
    else:
        value = text  # a bare word, such as exactly_once
    try:
        return parse_setting(name, value)
    except SettingError as e:
        shown = text if token.type != "STRING" else value
        if isinstance(e, RefusedSetting):
            raise LangError(str(e), loc) from None
        raise LangError(f"setting '{name}' must be {e.expected}, not {shown}", loc) from None


def _builder_error(error: Exception, loc: SourceLocation,
                   naming_hint: Callable[[str], str] | None = None) -> LangError:
    """A builder ValueError as a diagnostic in `.flow` words (no `name=` advice meant for Python)."""
    message = str(error.args[0]) if error.args else str(error)
    prefix = f"{loc}: "
    if message.startswith(prefix):
        message = message[len(prefix):]
    elif ": " in message and message.split(": ", 1)[0].count(":") == 2:
        message = message.split(": ", 1)[1]  # another location's prefix
    if "already exists" in message:
        return LangError(message.split(";")[0], loc, "choose another name")
    if "would be named" in message:
        base = message.split("'")[1]  # this step would be named 'BASE' like an earlier one
        return LangError(message.split(";")[0], loc,
                         "its topic or store name derives from it; " + naming_hint(base) if naming_hint else
                         "its topic or store name derives from it: declare it with its own name, "
                         "`stream NAME = ...` or `table NAME = ...`")
    return LangError(message, loc)


__all__ = ["FlowTransformer", "Step", "BAD"]
