"""Parsing `.flow` text into a lark tree, and turning lark's errors into plain diagnostics.

The grammar ships inside the package (`dataflow/grammar/flow.lark`) and is compiled
once per process. Syntax errors name what was expected by its literal text (`'|'`,
`'}'`), never by lark's terminal names, and parsing goes on after an error (from the
next line that starts a declaration) so several independent mistakes are reported.

>>> tree = parse("pipeline p\\ntopic t\\nt | to stdout", "x.flow")
>>> [str(child.data) for child in tree.children]
['pipeline_decl', 'topic_decl', 'pipe_stmt']
>>> try:
...     parse("pipeline p\\nt | filtr x", "x.flow")
... except FlowError as e:
...     print(e.diagnostics[0])
x.flow:2:5: error: unknown stage 'filtr'; did you mean 'filter'?
"""
from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import gc
import re
from importlib import resources
from typing import Any, Iterator

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.parsers.lalr_parser_state import ParserState

from ..ir.diagnostics import Diagnostic
from ..ir.location import SourceLocation
from .diagnostics import FlowError, did_you_mean, normalize_newlines

#: the words that start a stage after `|`; a line starting with one of them lacks its `|`
STAGE_WORDS = ("filter", "map", "flat_map", "group_by", "select_key", "event_time", "through", "window",
               "aggregate", "to_table", "changes", "join", "inner", "left", "outer", "merge", "branch", "echo", "call", "to")
DECLARATION_WORDS = ("record", "topic", "udf", "stream", "table")

#: human names of the terminals that are patterns rather than literal text
TERMINAL_NAMES = {
    "NAME": "a name",
    "STRING": "a string",
    "INT": "a whole number",
    "FLOAT": "a number",
    "DURATION": "a duration like 30s",
    "$END": "the end of the file",
}
OPERATORS = {"+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=", "and", "or", "is"}
EXPRESSION_STARTS = {"NAME", "STRING", "INT", "FLOAT", "DURATION", "(", "[", "{", "-", "not", "true", "false",
                     "null"}
MAX_SYNTAX_ERRORS = 10

_COMMENTS: contextvars.ContextVar[list[Token] | None] = contextvars.ContextVar("flow_comments", default=None)


def grammar_text() -> str:
    """The grammar, read from the installed package (works from a wheel, not just a checkout)."""
    return resources.files("dataflow").joinpath("grammar", "flow.lark").read_text(encoding="utf-8")


def _keep_comment(token: Token) -> Token:
    collected = _COMMENTS.get()
    if collected is not None:
        collected.append(token)
    return token


@functools.cache
def lark_parser() -> Lark:
    """The compiled LALR parser (contextual lexer: keywords are reserved only where they can appear)."""
    parser = Lark(grammar_text(), parser="lalr", lexer="contextual", propagate_positions=True,
                  maybe_placeholders=False, lexer_callbacks={"COMMENT": _keep_comment})
    _skip_pass_through_positions(parser)
    return parser


def _skip_pass_through_positions(parser: Lark) -> None:
    """Speed: let `?sum: product`-style rules hand their only child up without position work.

    Every operand climbs the whole precedence chain (`?atom` ... `?expr`), and lark
    recomputes the positions of the node it passes up at each level, although they
    cannot change. Skipping that gives the same tree, positions included (a test
    compares), and parses about 15% faster. Lark keeps its reduction callbacks in
    `_callbacks`, shared with the parser; if a lark version does not, nothing changes.
    """
    callbacks = getattr(parser, "_callbacks", None)
    if not isinstance(callbacks, dict):
        return
    for rule in parser.rules:
        if rule.options.expand1 and not rule.alias and len(rule.expansion) == 1 and rule in callbacks:
            callbacks[rule] = _pass_single_child(callbacks[rule])


def _pass_single_child(callback: Any) -> Any:
    def reduce(children: list[Any]) -> Any:
        return children[0] if len(children) == 1 else callback(children)

    return reduce


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: for building a large tree and graph at once.

    Parsing makes hundreds of thousands of objects that all stay alive, and CPython's collector
    walks every one of them again at each of its collections: 40% of the time of a large file.
    Nothing made here forms cycles that must go early; what does is collected after. Nests.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def parse(text: str, filename: str = "<string>", comments: list[Token] | None = None) -> Tree:
    """The parse tree of `text`, or FlowError with one diagnostic per syntax error found.

    `comments`, when given, receives the comment tokens (the formatter keeps them).
    A line may end with LF, CRLF or CR: lark counts LF only, so the others become LF
    first (positions stay those of the lines as written).
    """
    with gc_paused():
        return _parse(text, filename, comments)


def _parse(text: str, filename: str, comments: list[Token] | None) -> Tree:
    parser = lark_parser()
    diagnostics: list[Diagnostic] = []
    current = normalize_newlines(text)
    resume_line = 0  # errors before this line come from blanking out an earlier error
    for _ in range(MAX_SYNTAX_ERRORS):
        found: list[Token] = []
        reset = _COMMENTS.set(found)
        try:
            tree = parser.parse(current)
        except UnexpectedInput as e:
            diagnostic = syntax_diagnostic(e, filename, current, parser)
            if diagnostic.loc.line < resume_line or diagnostic in diagnostics:
                break  # an echo of the region we skipped, not a mistake of the user's
            diagnostics.append(diagnostic)
            region = _recovery_region(current, diagnostic.loc.line)
            if region is None:
                break
            current, resume_line = _blank(current, *region), region[1]
            continue
        finally:
            _COMMENTS.reset(reset)
        if not diagnostics:
            if comments is not None:
                comments.extend(found)
            return tree
        break
    raise FlowError(diagnostics, text, filename)


# --------------------------------------------------------------------------- error messages


def describe_terminal(name: str, parser: Lark | None = None) -> str:
    """What a terminal looks like to a user: its literal text in quotes, or a human name."""
    if name in TERMINAL_NAMES:
        return TERMINAL_NAMES[name]
    literal = _literal(name, parser or lark_parser())
    if literal is not None:
        return f"'{literal}'"
    return "a " + name.lower().strip("_").replace("_", " ")


def _literal(name: str, parser: Lark) -> str | None:
    try:
        terminal = parser.get_terminal(name)
    except KeyError:
        return None
    if terminal.pattern.type == "str":
        return str(terminal.pattern.value)
    return None


def describe_expected(expected: set[str], parser: Lark | None = None) -> str:
    """A short English list of what could have come next, in a stable order."""
    parser = parser or lark_parser()
    names = {n for n in expected if n != "$END"} or set(expected)
    texts = {n: _literal(n, parser) for n in names}
    literals = {t for t in texts.values() if t is not None}
    parts: list[str] = []
    stage_words = set(STAGE_WORDS) - {"inner", "left", "outer"}
    if len(literals & stage_words) >= 5:
        parts.append("a stage such as 'filter' or 'map'")
        literals -= set(STAGE_WORDS)
    if set(DECLARATION_WORDS) <= literals:
        parts.append("a new declaration")
        literals -= set(DECLARATION_WORDS)
        names.discard("NAME")
    if len(literals & OPERATORS) >= 5:
        parts.append("an operator")
        literals -= OPERATORS
    pattern_names = {n for n, t in texts.items() if t is None}
    if {"NAME", "INT", "STRING"} <= pattern_names and "(" in literals:
        parts.append("an expression")
        literals -= EXPRESSION_STARTS
        pattern_names -= EXPRESSION_STARTS
    parts.extend(f"'{lit}'" for lit in sorted(literals, key=_literal_order))
    parts.extend(TERMINAL_NAMES.get(n) or describe_terminal(n, parser)
                 for n in sorted(pattern_names & names, key=_pattern_order))
    if not parts:
        return "something else"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def _literal_order(text: str) -> tuple[int, str]:
    return (0 if not text[0].isalpha() else 1, text)


def _pattern_order(name: str) -> tuple[int, str]:
    order = ["NAME", "STRING", "INT", "FLOAT", "DURATION", "$END"]
    return (order.index(name) if name in order else len(order), name)


def _describe_token(token: Token) -> str:
    if token.type == "$END":
        return "the end of the file"
    if token.type == "NAME":
        return f"name '{token.value}'"
    if token.type == "STRING":
        return f"string {token.value}"
    if token.type in ("INT", "FLOAT"):
        return f"number {token.value}"
    if token.type == "DURATION":
        return f"duration {token.value}"
    return f"'{token.value}'"


def _token_loc(filename: str, token: Token) -> SourceLocation:
    if token.type == "$END":
        # lark gives the end marker the position of the last token; point just past it instead.
        line = token.end_line or token.line or 1
        column = token.end_column or token.column or 1
        return SourceLocation(filename, line, column)
    return SourceLocation(filename, token.line or 1, token.column or 1, token.end_line, token.end_column)


def _end_of_content(filename: str, text: str) -> SourceLocation:
    """Just past the last character that is not white space (where a missing token would go)."""
    content = text.rstrip()
    line = content.count("\n") + 1
    return SourceLocation(filename, line, len(content) - (content.rfind("\n") + 1) + 1)


def syntax_diagnostic(error: UnexpectedInput, filename: str, text: str, parser: Lark | None = None) -> Diagnostic:
    """One clear diagnostic for a lark error in `text`."""
    parser = parser or lark_parser()
    unfinished = _unfinished_statement(error, filename, text, parser)
    if unfinished is not None:
        return unfinished
    if isinstance(error, UnexpectedToken):
        return _unexpected_token(error, filename, text, parser)
    if isinstance(error, UnexpectedCharacters):
        return _unexpected_character(error, filename, text, parser)
    line = getattr(error, "line", 1) or 1
    column = getattr(error, "column", 1) or 1
    return Diagnostic("syntax error", SourceLocation(filename, max(1, line), max(1, column)))


def _unexpected_token(error: UnexpectedToken, filename: str, text: str, parser: Lark) -> Diagnostic:
    token = error.token
    expected = acceptable(error)
    literals = {lit for n in expected if (lit := _literal(n, parser)) is not None}
    loc = _token_loc(filename, token)
    if token.type == "$END" and not getattr(error.state, "value_stack", None):
        loc = _end_of_content(filename, text)  # lark puts an end with no token before it at 1:1

    stray = _stray_statement_word(error, expected, parser)
    if stray is not None and stray.value == "pipeline":
        return Diagnostic("a file has one pipeline header, at the top", _token_loc(filename, stray),
                          "put its settings in the header: `pipeline NAME { setting value }`")
    if stray is not None:
        return Diagnostic(f"expected '|' before '{stray.value}'", _token_loc(filename, stray),
                          "each stage of a pipe starts with '|'")
    if token.type == "NAME" and len(literals & set(STAGE_WORDS)) >= 5:
        return Diagnostic(f"unknown stage '{token.value}'", loc,
                          did_you_mean(token.value, STAGE_WORDS, "stages are: " + ", ".join(STAGE_WORDS)))
    if token.type == "$END":
        return Diagnostic(f"unexpected end of file; expected {describe_expected(expected, parser)}", loc)
    message = f"unexpected {_describe_token(token)}; expected {describe_expected(expected, parser)}"
    if token.type == "DURATION" and _lone_name(error) == "every":
        return Diagnostic("a timer needs a name", _token_loc(filename, error.state.value_stack[-1]),  # type: ignore[union-attr]
                          f"declare it: stream heartbeat = every {token.value} emit ...")
    if token.type in ("INT", "FLOAT") and expected == {"DURATION"}:
        return Diagnostic(message, loc, "a duration has a unit: 500ms, 10s, 5m, 1h or 1d")
    hint = ""
    before = text[token.start_pos - 1] if token.start_pos else ""
    if token.type == "NAME" and "pipeline" in literals:
        hint = "a .flow file starts with `pipeline NAME`"
        message = f"unexpected {_describe_token(token)}; expected 'pipeline'"
    elif token.type == "NAME" and literals and all(lit.isidentifier() for lit in literals):
        hint = did_you_mean(token.value, literals)  # a misspelt keyword: `to sdtout`
    elif token.value == "=" and "=" not in literals:
        hint = "compare with '=='"
    elif token.value == "|" and before == "|" or token.value in ("&", "&&", "||"):
        hint = "write 'and' and 'or'"
    return Diagnostic(message, loc, hint)


def acceptable(error: UnexpectedToken) -> set[str]:
    """The terminals the parser could really have taken where it stopped.

    Lark's `expected` is the lookahead set of the LALR state, which can name tokens that
    would fail after the pending reductions (and, when the contextual lexer raised the
    error, only some of the tokens). Try each one on a copy of the parser state instead,
    as lark's `InteractiveParser.accepts` does, without running callbacks.
    """
    state = getattr(error, "state", None)
    try:
        conf = copy.copy(state.parse_conf)  # type: ignore[union-attr]
        conf.callbacks = {}
        choices = state.parse_conf.states[state.position]  # type: ignore[union-attr]
        found = set()
        for name in choices:
            if not name.isupper():
                continue  # a rule, not a terminal
            probe = ParserState(conf, state.lexer, list(state.state_stack), list(state.value_stack))  # type: ignore[union-attr]
            try:
                probe.feed_token(Token(name, ""), name == "$END")
            except UnexpectedToken:
                continue
            found.add(name)
    except Exception:  # noqa: BLE001 - a lark without these internals: fall back to its own answer
        return set(error.expected or ())
    return found or set(error.expected or ())


_STATEMENTS = {"pipeline_decl", "record_decl", "topic_decl", "udf_decl", "stream_decl", "table_decl", "pipe_stmt"}


def _lone_name(error: UnexpectedToken) -> str | None:
    """The name that starts a statement, when it is all the statement holds so far."""
    stack = getattr(getattr(error, "state", None), "value_stack", None)
    if not stack:
        return None
    *before, top = stack
    # earlier statements, maybe gathered by lark into a `__start_star_N` tree
    if not all(isinstance(x, Tree) and (x.data in _STATEMENTS or x.data.startswith("__start")) for x in before):
        return None
    return str(top.value) if isinstance(top, Token) and top.type == "NAME" else None


def _stray_statement_word(error: UnexpectedToken, expected: set[str], parser: Lark) -> Token | None:
    """A stage word (missing its '|') or `pipeline` that was read as the name starting a new pipe.

    Keywords are contextual, so `filter` after a finished stream is read as the name at the
    start of a new statement, and the error only shows at the token after it. The parser
    stack tells us: its top is that lone name, and all the parser wants next is '|' or '.'.
    """
    stack = getattr(getattr(error, "state", None), "value_stack", None)
    if not stack:
        return None
    top = stack[-1]
    if isinstance(top, Tree) and top.data == "ref" and len(top.children) == 1:
        top = top.children[0]  # lark may already have reduced the lone name to a `ref`
    if not (isinstance(top, Token) and top.type == "NAME" and top.value in (*STAGE_WORDS, "pipeline")):
        return None
    wanted = {_literal(n, parser) for n in expected}
    return top if wanted <= {"|", "."} else None


_LINE_START_KEYWORD = re.compile(r"^(pipeline|record|topic|udf|stream|table)\b", re.MULTILINE)


def _unfinished_statement(error: UnexpectedInput, filename: str, text: str, parser: Lark) -> Diagnostic | None:
    """The real mistake when a statement is left unfinished and the next one's keyword was read as a name.

    Keywords are contextual, so in `filter amount >` followed by `stream b = ...` on the next
    line, `stream` is taken as a field name and the error only shows at `=`. If a line
    starting with a declaration keyword lies before the error, parse the text up to that
    keyword: if the statement before it is unfinished, say so where it ends.
    """
    if isinstance(error, UnexpectedToken):
        position = len(text) if error.token.type == "$END" else error.token.start_pos
    else:
        position = getattr(error, "pos_in_stream", None)
    if position is None:
        return None
    keyword = None
    for match in _LINE_START_KEYWORD.finditer(text, 0, position):
        keyword = match
    if keyword is None or keyword.start() == 0:
        return None
    try:
        parser.parse(text[:keyword.start()])
    except UnexpectedToken as e:
        if e.token.type != "$END" or not getattr(getattr(e, "state", None), "value_stack", None):
            return None  # not unfinished, or nothing before the keyword but comments: no statement to blame
        line = text.count("\n", 0, keyword.start()) + 1
        loc = _token_loc(filename, e.token)
        return Diagnostic(f"unfinished statement; expected {describe_expected(acceptable(e), parser)}", loc,
                          f"'{keyword.group(1)}' on line {line} starts a new declaration")
    except UnexpectedInput:
        return None
    return None


def _unexpected_character(error: UnexpectedCharacters, filename: str, text: str, parser: Lark) -> Diagnostic:
    char = error.char
    pos = error.pos_in_stream or 0
    loc = SourceLocation(filename, max(1, error.line), max(1, error.column))
    if char == '"':
        return Diagnostic("unterminated string", loc, 'close it with " on the same line')
    if char == "'":
        return Diagnostic("strings use double quotes", loc, "write \"text\" instead of 'text'")
    if char == "=" and text[pos:pos + 2] != "==":
        return Diagnostic("unexpected '='", loc, "compare with '=='")
    if char == "&" or char == "|" and text[pos:pos + 2] == "||":
        return Diagnostic(f"unexpected '{char}'", loc, "write 'and' and 'or'")
    shown = char if char.isprintable() and not char.isspace() else repr(char)
    allowed = set(error.allowed or ())
    expected = f"; expected {describe_expected(allowed, parser)}" if allowed else ""
    return Diagnostic(f"unexpected character '{shown}'{expected}", loc)


# --------------------------------------------------------------------------- recovery

_STATEMENT_START = re.compile(r"(pipeline|record|topic|udf|stream|table)\b|[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_]\w*)*\s*\|")


def _is_statement_start(line: str) -> bool:
    return bool(_STATEMENT_START.match(line))


def _recovery_region(text: str, error_line: int) -> tuple[int, int] | None:
    """Lines [start, end) to blank out so parsing can resume after the broken statement.

    A statement is taken to start at a line that begins (in column 1) with a declaration
    keyword or with `name |`: the layout `dataflow fmt` produces. The pipeline header is
    never blanked: without it nothing after it would parse.
    """
    lines = text.split("\n")
    start = next((i for i in range(min(error_line, len(lines)), 0, -1) if _is_statement_start(lines[i - 1])), None)
    if start is None or lines[start - 1].startswith("pipeline"):
        return None
    end = next((i for i in range(error_line + 1, len(lines) + 1) if _is_statement_start(lines[i - 1])), None)
    if end is None:
        return None
    return start, end


def _blank(text: str, start: int, end: int) -> str:
    """Replace lines [start, end) by spaces, keeping every position of the rest of the file."""
    lines = text.split("\n")
    for i in range(start - 1, end - 1):
        lines[i] = " " * len(lines[i])
    return "\n".join(lines)


__all__ = ["parse", "gc_paused", "lark_parser", "grammar_text", "syntax_diagnostic", "describe_expected", "describe_terminal",
           "STAGE_WORDS"]
