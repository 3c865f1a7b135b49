"""Every diagnostic of a broken `.flow` file is located, and located right (issue 17).

Two halves:

- a corpus of hand-written cases (`fuzz_corpus/NAME.flow`) whose full report, with the
  exact `file:line:col`, the echoed source line and the caret, is `fuzz_corpus/NAME.expected`
  (`{{9*100000}}` in a case stands for 100,000 nines, so big literals need no big files);
- deterministic mutations of the examples and the corpus (a fixed seed), each checked
  against variants that must move every location in a known way: the same text with CRLF
  or CR line endings (same lines, columns and rendering), and behind a leading comment or
  blank lines (every line one or two further down, columns unchanged). A mutation that
  writes a literal past its bound must be reported exactly at that literal.
"""
from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from dataflow.builder import Flow
from dataflow.ir.diagnostics import Diagnostic
from dataflow.lang import FlowError, load_flow, parse_flow
from dataflow.lang.diagnostics import source_lines

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "fuzz_corpus"
CASES = sorted(p.stem for p in CORPUS.glob("*.flow"))
EXAMPLES = sorted((HERE.parents[1] / "examples").glob("*.flow"))
PLACEHOLDER = re.compile(rb"\{\{(.)\*(\d+)\}\}")
SEED = 17
MUTATIONS = 60


def expand(data: bytes) -> bytes:
    """`{{9*5}}` becomes `99999`."""
    return PLACEHOLDER.sub(lambda m: m.group(1) * int(m.group(2)), data)


def report(path: str) -> str:
    """What `dataflow check` shows for a file: its diagnostics rendered, or "ok"."""
    try:
        load_flow(path)
    except FlowError as error:
        return str(error)
    return "ok"


# ---------------------------------------------------------------------------- the corpus


def test_the_corpus_holds_every_case_of_the_issue() -> None:
    wanted = {"header_after_comment", "cr_endings", "crlf_endings", "int_100k_digits", "float_overflow",
              "string_too_long", "partitions_topic", "partitions_header", "partitions_100k_digits",
              "settings_bounds", "duration_too_long"}
    assert wanted <= set(CASES)
    assert all((CORPUS / f"{case}.expected").exists() for case in CASES)


@pytest.mark.parametrize("case", CASES)
def test_corpus_case_is_reported_at_its_exact_location(case: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / f"{case}.flow").write_bytes(expand((CORPUS / f"{case}.flow").read_bytes()))
    monkeypatch.chdir(tmp_path)
    expected = (CORPUS / f"{case}.expected").read_text(encoding="utf-8")
    assert report(f"{case}.flow") == expected.rstrip("\n")


# ---------------------------------------------------------------------------- mutations

WORDS = ["pipeline", "topic", "stream", "table", "record", "filter", "map", "group_by", "window", "aggregate",
         "join", "to", "stdout", "partitions", "|", "{", "}", "(", ")", ",", ":", "=", "==", ">", "-", "x",
         "_value", '"s"', '"', "1", "1.5", "10s", "\n", "# c\n", "\r", "\r\n", "\t", "é"]
TOKEN = re.compile(r"\s+|#[^\n]*|\"(?:[^\"\\\n]|\\.)*\"|[A-Za-z_]\w*|\d+\w*|==|!=|<=|>=|->|.", re.S)
#: a literal past its bound, for each kind of number token, and the start of its message
TOO_BIG = [
    (re.compile(r"(?<![\w.])\d+(?![\w.])"), "9" * 100_000, "the whole number 999999999999...9999 (100000 characters) "
                                                          "does not fit in 64 bits"),
    (re.compile(r"(?<![\w.])\d+(ms|s|m|h|d)(?!\w)"), "36501d", "a duration is at most 36500d"),
    (re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])"), "1e999", "the number 1e999 is too large for a 64-bit float"),
]


def mutate(text: str, rng: random.Random) -> str:
    parts = TOKEN.findall(text)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(parts))
        action = rng.choice(["delete", "insert", "replace", "duplicate", "swap"])
        if action == "delete":
            del parts[i:i + rng.randint(1, 3)]
        elif action == "insert":
            parts.insert(i, rng.choice(WORDS))
        elif action == "replace":
            parts[i] = rng.choice(WORDS)
        elif action == "duplicate":
            parts.insert(i, parts[i])
        else:
            j = rng.randrange(len(parts))
            parts[i], parts[j] = parts[j], parts[i]
        if not parts:
            parts = ["\n"]
    return "".join(parts)


def texts() -> list[str]:
    sources = [p.read_text(encoding="utf-8") for p in EXAMPLES]
    sources += [expand((CORPUS / f"{c}.flow").read_bytes()).decode("utf-8") for c in CASES
                if c != "not_utf8_cr" and "digits" not in c and "long" not in c]
    rng = random.Random(SEED)
    return [mutate(rng.choice(sources), rng) for _ in range(MUTATIONS)]


def diagnostics(text: str) -> list[Diagnostic]:
    """The diagnostics of `text`: nothing but a Flow or a FlowError may come out."""
    try:
        result = parse_flow(text, "m.flow")
    except FlowError as error:
        assert error.diagnostics, "a FlowError always says what is wrong"
        return error.diagnostics
    assert isinstance(result, Flow)
    return []


def rendered(text: str) -> str:
    try:
        parse_flow(text, "m.flow")
    except FlowError as error:
        return str(error)
    return "ok"


def assert_located(text: str, found: list[Diagnostic]) -> None:
    lines = source_lines(text)
    for d in found:
        assert d.loc.file == "m.flow", str(d)
        assert 1 <= d.loc.line <= len(lines), (str(d), len(lines))
        assert 1 <= d.loc.column <= len(lines[d.loc.line - 1]) + 1, (str(d), lines[d.loc.line - 1])


def where(found: list[Diagnostic], shift: int = 0) -> list[tuple[int, int, str]]:
    return [(d.loc.line - shift, d.loc.column, d.message) for d in found]


@pytest.mark.parametrize("index", range(MUTATIONS))
def test_mutated_file_locations_move_only_as_its_text_does(index: int) -> None:
    text = texts()[index]
    lf = text.replace("\r\n", "\n").replace("\r", "\n")
    base = diagnostics(lf)
    assert_located(lf, base)
    for ending in ("\r\n", "\r"):
        variant = lf.replace("\n", ending)
        found = diagnostics(variant)
        assert_located(variant, found)
        assert where(found) == where(base), repr(ending)
        assert rendered(variant) == rendered(lf), repr(ending)
    if not lf.strip():
        return  # an empty file's end is at 1:1 and moves with what is put in front: nothing to compare
    for prefix, shift in (("# a comment in front\n", 1), ("\n\n", 2)):
        found = diagnostics(prefix + lf)
        assert_located(prefix + lf, found)
        assert where(found, shift) == where(base)


def literal_sites() -> list[tuple[str, re.Match[str], str, str]]:
    """(code, where a number is written, a number past its bound, its message) in every example,
    comments dropped so that only real literals are replaced."""
    sites = []
    for path in EXAMPLES:
        example = path.read_text(encoding="utf-8")
        code = "\n".join(line.split("#")[0] if '"' not in line else line for line in example.split("\n"))
        sites += [(code, m, big, message) for pattern, big, message in TOO_BIG for m in pattern.finditer(code)]
    return sites


@pytest.mark.parametrize("index", range(20))
def test_a_literal_past_its_bound_is_reported_at_the_literal(index: int) -> None:
    code, match, big, message = random.Random(SEED + index).choice(literal_sites())
    text = code[:match.start()] + big + code[match.end():]
    line = code.count("\n", 0, match.start()) + 1
    column = match.start() - (code.rfind("\n", 0, match.start()) + 1) + 1
    found = diagnostics(text)
    assert (line, column) in [(d.loc.line, d.loc.column) for d in found if d.message.startswith(message)], \
        ([str(d) for d in found], line, column, match.group())
    for ending in ("\r\n", "\r"):
        assert where(diagnostics(text.replace("\n", ending))) == where(found)
