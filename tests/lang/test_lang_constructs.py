"""Each construct of the language makes exactly the nodes the builder makes for the same pipeline."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

import pytest

from dataflow import Flow, Record, agg, col, fn, hopping, key, sliding, timestamp, tumbling, udf, value
from dataflow.ir import expr as ir
from dataflow.lang import FlowError, parse_flow


class Address(Record):
    city: str
    zip: str | None


class Person(Record):
    name: str
    age: int
    score: float
    active: bool
    photo: bytes
    born: datetime
    nickname: str | None
    tags: list[str]
    address: Address


def shape(flow: Flow) -> list[tuple[Any, ...]]:
    """Nodes (compared without locations) with their inputs, in topological order."""
    topology = flow.topology()
    return [(node, topology.inputs(node.name)) for node in topology.nodes()]


def same(text: str, build: Callable[[], Flow]) -> None:
    flow = parse_flow(text, "t.flow")
    expected = build()
    assert flow.settings == expected.settings
    assert shape(flow) == shape(expected)


PEOPLE = """\
pipeline app
record Address { city: str, zip: str? }
record Person {
  name: str, age: int, score: float, active: bool, photo: bytes, born: timestamp,
  nickname: optional str, tags: list<str>, address: Address
}
topic people: Person key str partitions 3 serializer msgpack key_serializer raw event_time born
topic out
"""


def people(flow: Flow) -> Any:
    return flow.source("people", key=str, value=Person, partitions=3, serializer="msgpack", key_serializer="raw",
                       timestamp="born")


def test_settings_records_and_topics() -> None:
    def build() -> Flow:
        flow = Flow("app", partitions=8, broker="kafka://localhost:9092", processing_guarantee="exactly_once",
                    data_dir="/tmp/d", commit_interval=0.5, commit_every=100, batch_size=10, concurrency=2,
                    auto_create_topics=False)
        people(flow).print()
        return flow

    header = ('pipeline app { partitions 8, broker "kafka://localhost:9092", processing_guarantee exactly_once\n'
              'data_dir "/tmp/d"  commit_interval 500ms commit_every 100 batch_size 10 concurrency 2 '
              'auto_create_topics false }\n')
    same(header + PEOPLE.split("\n", 1)[1] + "people | to stdout", build)


@pytest.mark.usefixtures("examples_importable")  # the udfs are examples/mypkg/
def test_stateless_stages_and_expressions() -> None:
    text = PEOPLE + """\
udf risk(float, str) -> float = "mypkg.scoring:risk"
stream adults = people
  | filter age >= 18 and not active or nickname is null and address.zip is not null
  | map { name, city: address.city, next: age + 1, ratio: score / 2 % 3 - -1, r: risk(score, name),
          inline: udf("mypkg.scoring:label", name), key: _key, ts: _timestamp, tags, list: [1, 2, 3], nested: { a: 1 } }
  | flat_map split(concat(name, " ", to_str(next)))
  | select_key lower(_value)
adults | to stdout
"""

    def build() -> Flow:
        flow = Flow("app")
        s = people(flow).filter(((col("age") >= 18) & ~col("active")) | (col("nickname").is_null()
                                                                        & col("address.zip").is_not_null()))
        s = s.map({"name": col("name"), "city": col("address.city"), "next": col("age") + 1,
                   "ratio": col("score") / 2 % 3 - (-1), "r": udf("mypkg.scoring:risk", col("score"), col("name"),
                                                                 returns=float),
                   "inline": udf("mypkg.scoring:label", col("name")), "key": key(), "ts": timestamp(), "tags": col("tags"),
                   "list": [1, 2, 3], "nested": {"a": 1}})
        s = s.flat_map(fn.split(fn.concat(col("name"), " ", fn.to_str(col("next")))))
        s.select_key(fn.lower(value()), name="adults").print()
        return flow

    same(text, build)


def test_literals() -> None:
    flow = parse_flow(PEOPLE + 'people | map { s: "a\\"b\\n\\u00e9", i: 7, f: 2.5, e: 1e3, d: 90s, ms: 250ms, '
                      't: true, n: null, neg: -2.5 } | to stdout', "t.flow")
    made = flow.topology().node("people.map").expr
    assert [(name, e) for name, e in made.fields] == [
        ("s", ir.Literal('a"b\né')), ("i", ir.Literal(7)), ("f", ir.Literal(2.5)), ("e", ir.Literal(1000.0)),
        ("d", ir.Literal(90_000, duration=True)), ("ms", ir.Literal(250, duration=True)), ("t", ir.Literal(True)),
        ("n", ir.Literal(None)), ("neg", ir.Literal(-2.5))]


def test_keys_topics_and_windows() -> None:
    text = PEOPLE + """\
topic mid
topic copies
stream by_city = people | group_by address.city partitions 6 | through mid partitions 2 serializer msgpack
table a = by_city | window tumbling 1m on born grace 10s expires 1h | aggregate { n: count() } emit final
table b = by_city | window hopping 10m step 1m time processing | aggregate { n: count() }
table c = by_city | echo out, copies serializer raw | window sliding 30s | aggregate { n: count() }
a.changes | to stdout
b | to stdout
c | to stdout
"""

    def build() -> Flow:
        flow = Flow("app")
        s = people(flow).group_by("address.city", partitions=6).through("mid", partitions=2, serializer="msgpack",
                                                                       name="by_city")
        a = s.window(tumbling("1m", on="born", grace="10s", expires="1h")).aggregate(n=agg.count(), emit="final",
                                                                                       name="a")
        b = s.window(hopping("10m", "1m", time="processing")).aggregate(n=agg.count(), name="b")
        c = s.echo("out", "copies", serializer="raw").window(sliding("30s")).aggregate(n=agg.count(), name="c")
        a.changes().print()
        b.changes().print()
        c.changes().print()
        return flow

    same(text, build)


@pytest.mark.usefixtures("examples_importable")  # the udfs are examples/mypkg/
def test_every_aggregation() -> None:
    text = PEOPLE + """\
table stats = people | group_by name | aggregate {
  n: count(), total: sum(score), low: min(age), high: max(age), mean: avg(score),
  all: collect(), names: set(name), last: latest(address), top: reduce("mypkg.reducers:top", score, 0)
}
stats | to topic out
"""

    def build() -> Flow:
        flow = Flow("app")
        flow.topic("out")
        t = people(flow).group_by("name").aggregate(
            n=agg.count(), total=agg.sum("score"), low=agg.min("age"), high=agg.max("age"), mean=agg.avg("score"),
            all=agg.collect(), names=agg.set("name"), last=agg.latest("address"),
            top=agg.reduce("mypkg.reducers:top", "score", initial=0), name="stats")
        t.to("out")
        return flow

    same(text, build)


def test_tables_and_joins() -> None:
    text = PEOPLE + """\
record Visit { person: str, page: str }
topic visits: Visit key str
topic profiles: Person key str partitions 3
table profiles = topic profiles
table latest = people | to_table
stream seen = visits | join people within 5m on person = name
stream enriched = visits | left join profiles on person
table both = profiles | outer join latest
stream updates = both | changes
seen | to stdout
enriched | to file "out.jsonl"
updates | to stdout
"""

    def build() -> Flow:
        flow = Flow("app")
        source = people(flow)
        visits = flow.source("visits", key=str, value=_visit())
        profiles = flow.table("profiles", key=str, value=Person, partitions=3, name="profiles")
        latest = source.to_table("latest")
        seen = visits.join(source, within="5m", on="person", right_on="name", name="seen")
        enriched = visits.join(profiles, how="left", on="person", name="enriched")
        both = profiles.join(latest, how="outer", name="both")
        updates = both.changes(name="updates")
        seen.print()
        enriched.to_file("out.jsonl")
        updates.print()
        return flow

    same(text, build)


def _visit() -> Any:
    from dataflow.ir.types import STR, Field, RecordType

    return RecordType("Visit", (Field("person", STR), Field("page", STR)))


def test_merge_branch_and_sinks_on_tables() -> None:
    text = PEOPLE + """\
topic more: Person key str
stream all = people | merge more
stream routed = all | branch { old: age > 60, young: age < 20 } default rest
routed.old | to topic out serializer msgpack partitions 2
routed.rest | to stdout
table counted = routed.young | group_by name | aggregate { n: count() }
counted | to topic out
counted.changes | to file "young.jsonl"
"""

    def build() -> Flow:
        flow = Flow("app")
        flow.topic("out")
        merged = people(flow).merge(flow.source("more", key=str, value=Person), name="all")
        routed = merged.branch(old=col("age") > 60, young=col("age") < 20, default="rest", name="routed")
        routed.old.to("out", serializer="msgpack", partitions=2)
        routed.rest.print()
        counted = routed.young.group_by("name").aggregate(n=agg.count(), name="counted")
        counted.to("out")
        counted.changes().to_file("young.jsonl")
        return flow

    same(text, build)


def test_a_trailing_sink_leaves_the_name_on_the_stream() -> None:
    flow = parse_flow(PEOPLE + "stream names = people | map name | to stdout\nnames | to topic out", "t.flow")
    assert sorted(n.name for n in flow.topology().nodes()) == [
        "names", "names.print", "names.to_out", "people"]


def test_a_topic_read_by_name_is_one_shared_source() -> None:
    flow = parse_flow(PEOPLE + "people | to stdout\npeople | to topic out", "t.flow")
    assert sorted(n.name for n in flow.topology().nodes()) == ["people", "people.print", "people.to_out"]


@pytest.mark.parametrize("body, message", [
    ("stream x = people\n", "'x' would only be another name for 'people'"),
    ("table x = people\n", "'x' would only be another name for 'people'; to read the topic as a table, "
                          "write `table x = topic people`"),
    ("people | branch { a: age > 1 }\n", "a branch needs a name to be used"),
    ("stream r = people | branch { a: age > 1 }\nr | to stdout\n", "'r' is a branch; continue from one of"),
    ("stream r = people | branch { a: age > 1 }\nr.b | to stdout\n", "branch 'r' has no output 'b'"),
    ("people | to stdout | filter age > 1\n", "nothing can follow a sink"),
    ("people | window hopping 1m | aggregate { n: count() }\n", "a hopping window needs a step"),
    ("people | window tumbling 1m step 1s | aggregate { n: count() }\n", "only hopping windows take a step"),
    ("people | window tumbling 1m time event | aggregate { n: count() }\n", "event-time windows need the field"),
    ("people | window session 1m step 1s | aggregate { n: count() }\n",
     "only hopping windows take a step; a session window does not"),
    ("people | window session 1m expires 30s | aggregate { n: count() }\n",
     "a window cannot expire before it closes (expires < gap + grace)"),
    ("people | window sessoin 1m | aggregate { n: count() }\n", "unknown window 'sessoin'; did you mean 'session'?"),
    ("people | aggregate { n: cnt() }\n", "unknown aggregation 'cnt'; did you mean 'count'?"),
    ("people | aggregate { n: sum() }\n", "sum() takes 1 argument, got 0"),
    ("people | aggregate { n: count(), n: count() }\n", "aggregation 'n' is given twice"),
    ("people | filter sum(age) > 1\n", "'sum' is an aggregation, not a function"),
    ("people | join people on age == 1\n", "join keys are written 'on left_key = right_key'"),
    ("people | to topic out serializer yaml\n", "unknown serializer 'yaml'"),
    ("people | map { a: 1, a: 2 } | to stdout\n", "field 'a' is given twice"),
    ("people | map _value.name | to stdout\n", "meta field '_value' has no fields"),
    ('people | map "\\q" | to stdout\n', "unknown escape '\\q' in a string"),
    ('udf lower(str) -> str = "a:b"\n', "udf 'lower' would hide the built-in function lower()"),
    ('udf f(str) -> str = "nope"\npeople | map f(name) | to stdout\n', "'nope' is not an import path"),
    ('udf f(str) -> str = "a.b:c"\npeople | map f(name, age) | to stdout\n', "f() takes 1 argument, got 2"),
    ("topic people\n", "topic 'people' is declared twice"),
    ("topic t: Person event_time bornn\n", "unknown field 'bornn' in Person; did you mean 'born'?"),
])
def test_mistakes(body: str, message: str) -> None:
    with pytest.raises(FlowError) as info:
        parse_flow(PEOPLE + body, "t.flow")
    assert any(message in str(d) for d in info.value.diagnostics), str(info.value)


def test_flow_error_is_a_pipeline_error_with_the_source() -> None:
    from dataflow.ir.diagnostics import PipelineError

    with pytest.raises(PipelineError) as info:
        parse_flow("pipeline p\ntopic t\nt | filter x >\n", "e.flow")
    error = info.value
    assert isinstance(error, FlowError) and error.sources == {"e.flow": "pipeline p\ntopic t\nt | filter x >\n"}
    assert error.rendered == str(error)
