"""Printed forms of a plan. One rendered model (`describe`) feeds text, JSON and DOT.

The text form is what people read aloud and what snapshots hold: deterministic,
sorted, `none` for empty lists, no memory addresses.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..ir import nodes as n
from ..ir.durations import format_duration
from ..ir.expr import render as render_expr
from ..ir.types import to_json as type_json
from .plan import ExecutionPlan

LABELS = {
    "source": "Source", "table_source": "Table source", "timer": "Timer", "map": "Map", "filter": "Filter", "flat_map": "FlatMap",
    "echo": "Echo", "branch": "Branch", "merge": "Merge", "group_by": "GroupBy", "through": "Through",
    "repartition": "Repartition", "window": "Window", "aggregate": "Aggregate", "table": "Table",
    "changes": "Changes", "join": "Join", "sink": "Sink", "fused": "Fused", "call_agent": "CallAgent",
    "event_time": "EventTime",
}


def describe_node(node: n.Node) -> dict[str, Any]:
    """The details of one node as plain, sorted JSON data."""
    d: dict[str, Any] = {"kind": node.kind, "name": node.name}
    if isinstance(node, (n.Source, n.TableSource)):
        d.update(topic=node.topic, key=type_json(node.key_type), value=type_json(node.value_type),
                 serializer=node.serializer, key_serializer=node.key_serializer)
        if node.timestamp_field:
            d["timestamp_field"] = node.timestamp_field
        if isinstance(node, n.TableSource) and node.bootstrap:
            d["bootstrap"] = True
    elif isinstance(node, n.Timer):
        d.update(interval=format_duration(node.interval_ms), value=render_expr(node.value))
    elif isinstance(node, n.Filter):
        d["predicate"] = render_expr(node.predicate)
    elif isinstance(node, (n.Map, n.FlatMap, n.EventTime)):
        d["expr"] = render_expr(node.expr)
    elif isinstance(node, n.Echo):
        d["topics"] = list(node.topics)
    elif isinstance(node, n.CallAgent):
        d.update(agent=node.target, output=node.value_type.render())
    elif isinstance(node, n.Branch):
        d["branches"] = [{"name": b, "predicate": render_expr(p)} for b, p in node.branches]
        d["default"] = node.default
    elif isinstance(node, n.GroupBy):
        d.update(key=render_expr(node.key), repartition=node.repartition)
    elif isinstance(node, (n.Through, n.Repartition)):
        d.update(topic=node.topic, partitions=node.partitions)
        if isinstance(node, n.Repartition):
            d["reason"] = node.reason
    elif isinstance(node, n.Window):
        d.update(window=node.window, size=format_duration(node.size_ms),
                 step=format_duration(node.step_ms) if node.step_ms else None, grace=format_duration(node.grace_ms),
                 expires=format_duration(node.expires_ms) if node.expires_ms else None, time=node.time,
                 time_field=".".join(node.time_field) if node.time_field else None)
    elif isinstance(node, n.Aggregate):
        d["aggregations"] = [{"output": a.output, "function": _agg_text(a)} for a in node.aggregations]
        d["emit"] = node.emit
    elif isinstance(node, n.Join):
        d.update(how=node.how, within=format_duration(node.within_ms) if node.within_ms is not None else None)
        if node.condition is not None:  # only when set, so plans of joins without one read as before
            d["condition"] = render_expr(node.condition)
    elif isinstance(node, n.Sink):
        d.update(sink=node.sink, target=node.target, serializer=node.serializer)
    elif isinstance(node, n.Fused):
        d["steps"] = [describe_node(s) for s in node.steps]
    return d


#: A window's clock in plan text, in the words of the docs: `time message` (the default) is the
#: record's event time, which is its message timestamp unless a source or stage set it.
_WINDOW_CLOCKS = {"message": "event time (record timestamp)", "processing": "processing time"}


def _window_size(window: dict[str, Any]) -> str:
    """`tumbling 1m`; a session window's size is its gap: `session gap 30m`."""
    gap = "gap " if window["window"] == "session" else ""
    return f"{window['window']} {gap}{window['size']}"


def _agg_text(a: n.Aggregation) -> str:
    if a.function == "reduce":
        arg = render_expr(a.arg) if a.arg is not None else "_value"
        init = f", initial={json.dumps(a.initial)}" if a.initial is not None else ""
        return f"reduce({json.dumps(a.reducer)}, {arg}{init})"
    return f"{a.function}({render_expr(a.arg) if a.arg is not None else ''})"


#: What marks the top of a project: a plan names its files relative to the nearest
#: directory above them holding one of these.
PROJECT_MARKERS = ("pyproject.toml", ".git")


def location_text(loc: Any) -> str:
    """A node's location as plans print it: ``file:line[:column]`` with the file relative to
    its project's root, so that a plan printed (or snapshotted) on one machine reads the same
    on another, whatever the directory the project was checked out in or run from.

    The root is the nearest directory above the file that holds ``pyproject.toml`` or
    ``.git``; without one, the working directory. A file outside the root, and a name that
    is not a file (``<stdin>``), print as given.

    >>> from dataflow.ir.location import SourceLocation
    >>> location_text(SourceLocation("examples/fraud.flow", 3, 7))  # run from the repository
    'examples/fraud.flow:3:7'
    >>> location_text(SourceLocation("<stdin>", 1, 1))
    '<stdin>:1:1'
    """
    return str(dataclasses.replace(loc, file=_project_relative(loc.file)))


def _project_relative(file: str) -> str:
    if not file or file.startswith("<"):
        return file
    path = Path(file)
    absolute = (path if path.is_absolute() else Path.cwd() / path).resolve()
    root = _project_root(absolute.parent) or Path.cwd().resolve()
    try:
        return absolute.relative_to(root).as_posix()
    except ValueError:
        return file


def _project_root(directory: Path) -> Path | None:
    for candidate in (directory, *directory.parents):
        if any((candidate / marker).exists() for marker in PROJECT_MARKERS):
            return candidate
    return None


def describe(plan: ExecutionPlan, locations: bool = True) -> dict[str, Any]:
    """The one rendered model of a plan."""
    topo = plan.topology
    agents = []
    for agent in plan.agents:
        members = set(agent.nodes)
        readable = members | {boundary for boundary, _ in agent.entries}  # incl. topics other agents write
        nodes = []
        for name in agent.nodes:
            node = topo.node(name)
            entry = describe_node(node)
            if isinstance(node, n.Through):  # partitions=None means "as upstream": say how many
                entry["partitions"] = plan.schemas[name].partitions
            entry["inputs"] = [_edge_text(e.source, e.port, e.side) for e in topo.inputs(name) if e.source in readable]
            entry["outputs"] = [_edge_text(t, e.port, e.side, target=True) for t, e in topo.outputs(name) if t in members]
            schema = plan.schemas[name]
            entry["schema"] = {"key": type_json(schema.key), "value": type_json(schema.value), "shape": schema.shape}
            if locations:
                entry["location"] = location_text(node.loc)
            nodes.append(entry)
        agents.append({
            "index": agent.index, "name": agent.name, "partitions": agent.partitions,
            "concurrency": agent.concurrency, "source_topics": list(agent.source_topics),
            "entries": [{"node": nm, "topic": t} for nm, t in agent.entries],
            "output_topics": list(agent.output_topics), "stores": list(agent.stores), "nodes": nodes,
        })
    return {
        "pipeline": plan.name,
        "settings": {k: v for k, v in sorted(plan.settings.to_json().items())},
        "agents": agents,
        "topics": [{"name": t.name, "partitions": t.partitions, "role": t.role, "internal": t.internal,
                    "compacted": t.compacted, "key": type_json(t.key_type), "value": type_json(t.value_type),
                    "serializer": t.serializer} for t in plan.topics],
        "stores": [{"name": s.name, "node": s.node, "kind": s.kind, "changelog": s.changelog,
                    "partitions": s.partitions, "key": type_json(s.key_type), "value": type_json(s.value_type),
                    "window": describe_node(s.window) if s.window else None} for s in plan.stores],
    }


def _edge_text(name: str, port: str | None, side: str | None, target: bool = False) -> str:
    text = name
    if port:
        text = f"{text} [{port}]" if target else f"{name} [{port}]"
    if side:
        text = f"{text} ({side})"
    return text


def to_json(plan: ExecutionPlan, locations: bool = True) -> str:
    """The full plan as stable, sorted JSON."""
    return json.dumps(describe(plan, locations), indent=2, sort_keys=True) + "\n"


# --------------------------------------------------------------------------- text


def to_text(plan: ExecutionPlan, locations: bool = True) -> str:
    """A plan people can read aloud, in the spirit of Kafka Streams' `Topology.describe()`."""
    model = describe(plan, locations)
    s = plan.settings
    lines = [f"Pipeline {plan.name}: {len(plan.agents)} sub-topolog{'y' if len(plan.agents) == 1 else 'ies'}, "
             f"default {s.partitions} partitions, {s.processing_guarantee.replace('_', '-')}", ""]
    topics = {t["name"]: t for t in model["topics"]}
    for agent in model["agents"]:
        lines.append(f"Sub-topology {agent['index']}: agent {agent['name']} "
                     f"({agent['partitions']} partitions, concurrency {agent['concurrency']})")
        for entry in agent["entries"]:
            node = next((x for x in agent["nodes"] if x["name"] == entry["node"]), None)
            if node is None:  # a topic boundary written by an earlier sub-topology
                topic = topics[entry["topic"]]
                lines.append(f"  Source: {entry['node']} (topic: {entry['topic']}, {topic['partitions']} partitions)")
                readers = [x["name"] for x in _readers(plan, entry["node"], agent)]
                lines.append(f"    --> {', '.join(readers) or 'none'}")
        for node in agent["nodes"]:
            lines.extend(_node_lines(node, topics, plan, agent))
        lines.append("")
    lines.append("Topics:")
    for t in model["topics"]:
        flags = ", compacted" if t["compacted"] else ""
        lines.append(f"  {t['name']} ({t['role']}, {t['partitions']} partition{'s' if t['partitions'] != 1 else ''}"
                     f"{flags}, {t['serializer']})")
    lines.append("Stores:")
    if not model["stores"]:
        lines.append("  none")
    for st in model["stores"]:
        window = ""
        if st["window"]:
            w = st["window"]
            window = f", {_window_size(w)}" + (f" every {w['step']}" if w.get("step") else "")
        lines.append(f"  {st['name']} ({st['kind']}{window}, {st['partitions']} partitions, changelog: {st['changelog']})")
    return "\n".join(lines) + "\n"


def _readers(plan: ExecutionPlan, boundary: str, agent: dict[str, Any]) -> list[dict[str, Any]]:
    members = {x["name"]: x for x in agent["nodes"]}
    return [members[t] for t in plan.topology.successors(boundary) if t in members]


def _node_lines(node: dict[str, Any], topics: dict[str, Any], plan: ExecutionPlan,
                agent: dict[str, Any]) -> list[str]:
    label = LABELS.get(node["kind"], node["kind"])
    head = f"  {label}: {node['name']}"
    detail = _detail(node, topics)
    if detail:
        head += f" [{detail}]"
    if "location" in node:
        head += f"  @ {node['location']}"
    out = [head]
    for store in plan.stores:
        if store.node == node["name"]:
            out.append(f"    store: {store.name} (changelog: {store.changelog})")
    ins = node["inputs"]
    if ins:
        out.append(f"    <-- {', '.join(ins)}")
    elif node["kind"] not in ("source", "table_source", "timer"):
        boundary = [e["node"] for e in agent["entries"] if node["name"] in plan.topology.successors(e["node"])]
        out.append(f"    <-- {', '.join(boundary) or 'none'}")
    outs = node["outputs"]
    out.append(f"    --> {', '.join(outs) or _terminal(node)}")
    return out


def _terminal(node: dict[str, Any]) -> str:
    if node["kind"] in ("repartition", "through"):
        return f"topic {node['topic']}"
    return "none"


def _detail(node: dict[str, Any], topics: dict[str, Any]) -> str:
    kind = node["kind"]
    if kind in ("source", "table_source"):
        t = topics[node["topic"]]
        return f"topic: {node['topic']}, {t['partitions']} partitions, {node['serializer']}" + \
            (", bootstrap" if node.get("bootstrap") else "")
    if kind == "timer":
        return f"every {node['interval']}, emit {node['value']}"
    if kind == "filter":
        return node["predicate"]
    if kind in ("map", "flat_map", "event_time"):
        return node["expr"]
    if kind == "echo":
        return "topics: " + ", ".join(node["topics"])
    if kind == "call_agent":
        return f"agent: {node['agent']}" + (f" -> {node['output']}" if node["output"] != "any" else "")
    if kind == "branch":
        parts = [f"{b['name']}: {b['predicate']}" for b in node["branches"]]
        if node["default"]:
            parts.append(f"{node['default']}: otherwise")
        return "; ".join(parts)
    if kind == "group_by":
        return f"key: {node['key']}" + ("" if node["repartition"] else ", no repartition")
    if kind in ("repartition", "through"):
        reason = f", {node['reason']}" if node.get("reason") else ""
        return f"topic: {node['topic']}, {node['partitions']} partitions{reason}"
    if kind == "window":
        parts = [_window_size(node)]
        if node["step"]:
            parts.append(f"every {node['step']}")
        parts.append(f"on {node['time_field']}" if node["time_field"] else _WINDOW_CLOCKS.get(node["time"],
                                                                                         f"{node['time']} time"))
        if node["grace"] != "0ms":
            parts.append(f"grace {node['grace']}")
        if node["expires"]:
            parts.append(f"expires {node['expires']}")
        return ", ".join(parts)
    if kind == "aggregate":
        aggs = ", ".join(f"{a['output']}: {a['function']}" for a in node["aggregations"])
        return f"{aggs}; emit {node['emit']}"
    if kind == "join":
        return (node["how"] + (f", within {node['within']}" if node["within"] else "")
                + (f", condition: {node['condition']}" if node.get("condition") else ""))
    if kind == "sink":
        return f"{node['sink']}: {node['target']}" if node["sink"] != "stdout" else "stdout"
    if kind == "fused":
        return "; ".join(f"{s['kind']} {_detail(s, topics)}".strip() for s in node["steps"])
    return ""


from .render_dot import SvgUnavailable, to_dot, to_svg  # noqa: E402,F401 - the graph forms build on the model above

FORMATS = {"text": to_text, "json": to_json, "dot": to_dot, "svg": to_svg}
