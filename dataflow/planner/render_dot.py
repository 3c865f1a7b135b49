"""The plan as a graph: Graphviz DOT, and SVG drawn from it by Graphviz's `dot`.

Drawn top to bottom, one box per sub-topology, so that a plan stays narrow enough to read
at screen width; long details are wrapped, and a cut is marked with an ellipsis. Every
topic and store the plan names is connected: stores hang off the step that owns them and
name their changelog topic (drawn inside the store), and each sub-topology's bad records lead to the dead-letter topic.

>>> from dataflow import Flow
>>> from dataflow.planner import plan
>>> flow = Flow("app")
>>> flow.source("words", value=str).group_by(lambda w: w, name="by_word").count(name="counts").changes().to("out")
>>> dot = to_dot(plan(flow.topology()))
>>> '"counts" -> "store:counts" [style=dashed' in dot
True
"""
from __future__ import annotations

import shutil
import subprocess
from typing import Any

from ..ir import nodes as n
from .plan import ExecutionPlan

LINE_WIDTH = 40
LONGEST_WORD = 60  # longer unbroken text (a topic name, an expression) is cut with an ellipsis


class SvgUnavailable(RuntimeError):
    """Graphviz's `dot` program is not installed."""


def to_dot(plan: ExecutionPlan) -> str:
    """Graphviz source: one cluster per sub-topology, topics as ellipses (internal ones as
    cylinders), stores as folders beside the step that owns them."""
    from .render import LABELS, _detail, describe  # the one model every printed form shares
    model = describe(plan, locations=False)
    topics = {t["name"]: t for t in model["topics"]}
    stores = {s["name"]: s for s in model["stores"]}
    dead_letters = [t["name"] for t in model["topics"] if t["role"] == "dead-letter"]
    out = [f'digraph "{_esc(plan.name)}" {{', "  rankdir=TB;", "  compound=true;",
           '  graph [fontname="Helvetica", fontsize=11, nodesep=0.3, ranksep=0.35];',
           '  node [fontname="Helvetica", fontsize=10];', '  edge [fontname="Helvetica", fontsize=9];']
    for agent in model["agents"]:
        out.append(f'  subgraph "cluster_{agent["index"]}" {{')
        out.append(f'    label="{_label(["Sub-topology " + str(agent["index"]) + ": " + agent["name"]])}";')
        for node in agent["nodes"]:
            lines = [LABELS.get(node["kind"], node["kind"]), node["name"], *_wrap(_detail(node, topics))]
            out.append(f'    "{_esc(node["name"])}" [shape=box, label="{_label(lines)}"];')
        for store in (stores[name] for name in agent["stores"]):
            lines = ["store", store["name"], f"{store['kind']}, key {_type_text(store['key'])}"]
            if store["changelog"]:  # drawn in the store: a changelog is the store's own backup
                lines += ["changelog:", *_wrap(store["changelog"])]
            out.append(f'    "store:{_esc(store["name"])}" [shape=folder, label="{_label(lines)}"];')
        out.append("  }")
    for topic in model["topics"]:
        if topic["role"] == "changelog":
            continue
        shape = "cylinder" if topic["internal"] else "ellipse"
        out.append(f'  "topic:{_esc(topic["name"])}" [shape={shape}, label="{_label(_wrap(topic["name"]))}"];')
    topo = plan.topology
    for edge, target in topo.edges():
        if isinstance(topo.node(edge.source), (n.Repartition, n.Through)):
            topic = topo.node(edge.source).topic  # type: ignore[attr-defined]
            out.append(f'  "topic:{_esc(topic)}" -> "{_esc(target)}";')
            continue
        attrs = [f'label="{_esc(edge.port or edge.side)}"'] if (edge.port or edge.side) else []
        out.append(f'  "{_esc(edge.source)}" -> "{_esc(target)}"' + (f" [{', '.join(attrs)}]" if attrs else "") + ";")
    for name in topo.order():
        node = topo.node(name)
        for topic in _reads(node):
            out.append(f'  "topic:{_esc(topic)}" -> "{_esc(name)}";')
        for topic in _writes(node):
            out.append(f'  "{_esc(name)}" -> "topic:{_esc(topic)}";')
    for store in model["stores"]:
        out.append(f'  "{_esc(store["node"])}" -> "store:{_esc(store["name"])}" [style=dashed, arrowhead=none];')
    for topic in dead_letters:
        for agent in model["agents"]:  # one edge per sub-topology: any of its steps may dead-letter a record
            last = agent["nodes"][-1]["name"]
            out.append(f'  "{_esc(last)}" -> "topic:{_esc(topic)}" '
                       f'[ltail="cluster_{agent["index"]}", style=dotted, color=gray45, label="bad records"];')
    for agent_name in sorted({_agent_of(node)[0] for node in topo.nodes()} - {""}):
        out.append(f'  "agent:{_esc(agent_name)}" [shape=component, label="agent\\n{_esc(agent_name)}"];')
    for name in topo.order():
        agent_name, asked = _agent_of(topo.node(name))
        if agent_name:  # an ask is answered: draw it both ways
            out.append(f'  "{_esc(name)}" -> "agent:{_esc(agent_name)}"' + (" [dir=both];" if asked else ";"))
    out.append("}")
    return "\n".join(out) + "\n"


def to_svg(plan: ExecutionPlan) -> str:
    """Render with Graphviz's `dot`; `SvgUnavailable` when it is not installed."""
    dot = shutil.which("dot")
    if dot is None:
        raise SvgUnavailable("svg output needs Graphviz's `dot` program: install the graphviz package "
                             "(apt-get install graphviz, brew install graphviz), or use --format dot")
    result = subprocess.run([dot, "-Tsvg"], input=to_dot(plan).encode(), capture_output=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"dot failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout.decode()


def _wrap(text: str, width: int = LINE_WIDTH) -> list[str]:
    """``text`` in lines of about ``width`` characters: each `; `-separated clause starts a
    line and is broken at spaces; a word longer than LONGEST_WORD is cut, and the cut is
    shown with an ellipsis.

    >>> _wrap("filter amount > 1000; group_by key: account_id", 16)
    ['filter amount >', '1000;', 'group_by key:', 'account_id']
    >>> _wrap("x" * 70)
    ['xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…']
    """
    lines: list[str] = []
    clauses = text.split("; ")
    for index, clause in enumerate(clauses):
        words = clause.split(" ")
        current = ""
        for word in words:
            if len(word) > LONGEST_WORD:
                word = word[:LONGEST_WORD - 1] + "…"
            if current and len(current) + 1 + len(word) > width:
                lines.append(current)
                current = word
            else:
                current = f"{current} {word}" if current else word
        if current:
            lines.append(current)
        if lines and index < len(clauses) - 1:
            lines[-1] += ";"
    return lines


def _label(lines: list[str]) -> str:
    return "\\n".join(_esc(line) for line in lines if line)


def _type_text(value: Any) -> str:
    return value if isinstance(value, str) else value.get("record") or "record"


def _agent_of(node: n.Node) -> tuple[str, bool]:
    """(the agent a step calls or sends to, whether it asks), or ("", False)."""
    for step in node.steps if isinstance(node, n.Fused) else (node,):
        if isinstance(step, n.CallAgent):
            return step.target, True
        if isinstance(step, n.Sink) and step.sink == "agent":
            return step.target, False
    return "", False


def _reads(node: n.Node) -> list[str]:
    return [node.topic] if isinstance(node, (n.Source, n.TableSource)) else []


def _writes(node: n.Node) -> list[str]:
    from .split_subtopologies import written_topics
    return written_topics(node)


def _esc(text: Any) -> str:
    return str(text).replace("\\", "\\\\").replace('"', '\\"')
