"""The naming contract (docs/architecture.md, "The naming contract"): which edits keep which names.

Each test is one claim of the contract. Internal topics and stores are what state lives in,
so they are what a restart over existing state finds again, or does not.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dataflow import Flow, Record, agg, col, key, tumbling
from dataflow.cli import app
from dataflow.loader import load_pipeline
from dataflow.planner import plan

ROOT = Path(__file__).resolve().parents[2]
FLOW_EXAMPLES = sorted((ROOT / "examples").glob("*.flow"))


class W(Record):
    account_id: str
    amount: float
    country: str
    ts: int


def state_names(flow: Flow) -> dict[str, int]:
    """Every internal topic and store, with its partition count."""
    p = plan(flow.topology())
    names = {f"topic {t.name}": t.partitions for t in p.topics if t.internal}
    names.update({f"store {s.name}": s.partitions for s in p.stores})
    return names


def internal(flow: Flow) -> list[str]:
    return sorted(state_names(flow))


def fraud(*, anchor: str = "large", aggregate: str | None = "per_account", key: str = "account_id",
          group_by: str | None = None, size: str = "1m", grace: str = "0s", partitions: int = 4,
          pipeline: str = "fraud", extra_filter: bool = False, threshold: int = 1000, function: str = "sum") -> Flow:
    """examples/fraud.py with its names and settings as parameters."""
    flow = Flow(pipeline, partitions=partitions)
    w = flow.source("withdrawals", value=W)
    large = w.filter(col("amount") > threshold, name=anchor)
    if extra_filter:
        large = large.filter(col("country") != "XX")  # unnamed: not an anchor
    large.group_by(key, name=group_by).window(tumbling(size, grace=grace, on="ts")).aggregate(
        total=getattr(agg, function)("amount"), n=agg.count(), name=aggregate).changes().to("alerts")
    return flow


# --------------------------------------------------------------------------- the scheme

AWKWARD_OWNERS = ["a", "a-changelog", "a-repartition", "dead", "dead-letters", "a.left", "a-left", "x-dead"]


def test_names_of_different_roles_never_meet_and_one_role_names_one_owner():
    from dataflow.planner.naming import changelog_topic, dead_letter_topic, repartition_topic
    repartitions = {repartition_topic("app", o): o for o in AWKWARD_OWNERS}
    changelogs = {changelog_topic("app", o): o for o in AWKWARD_OWNERS}
    assert len(repartitions) == len(changelogs) == len(AWKWARD_OWNERS)
    assert not set(repartitions) & set(changelogs)
    assert dead_letter_topic("app") not in {*repartitions, *changelogs}


# --------------------------------------------------------------------------- edits that keep every name


def extended_flow_source(text: str, mode: str) -> str:
    """`.flow` text with unrelated steps added for every stream and table it declares: a filter,
    a branch and a sink on each stream, a count of each window, the changes of each table;
    appended at the end, or interleaved right after each declaration."""
    lines = text.splitlines()
    decls: list[tuple[int, str, str, str]] = []  # (last line index, kind, name, last stage)
    for i, line in enumerate(lines):
        m = re.match(r"(stream|table) (\w+) = ", line)
        if not m:
            continue
        end = i
        while end + 1 < len(lines) and lines[end + 1].startswith((" ", "\t", "}")):
            end += 1
        body = " ".join(lines[i:end + 1])
        decls.append((end, m.group(1), m.group(2), body.rsplit("|", 1)[-1].strip()))
    extras: dict[int, list[str]] = {}
    for end, kind, name, last in decls:
        if kind == "table":
            steps = [f'{name}.changes | to topic "extra-{name}"']
        elif last.startswith("window"):
            steps = [f"table extra_{name} = {name} | aggregate {{ extra_n: count() }}",
                     f'extra_{name}.changes | to topic "extra-{name}"']
        elif last.startswith("to "):
            steps = []  # a stream that ends in a sink has no events to go on with
        else:
            steps = [f'{name} | filter true | to topic "extra-{name}"',
                     f"stream extra_{name} = {name} | branch {{ hot: true }} default cold",
                     f'extra_{name}.hot | to topic "extra-{name}-hot"',
                     f'extra_{name}.cold | to stdout']
        extras.setdefault(end if mode == "interleaved" else len(lines) - 1, []).extend(steps)
    extras.setdefault(len(lines) - 1, []).extend([
        "table extra_counts = extra_input | group_by _value | aggregate { n: count() }",
        'extra_counts.changes | to topic "extra-counts"'])
    written = sorted({t for steps in extras.values() for step in steps for t in re.findall(r'to topic "(.+)"', step)})
    first_decl = next(i for i, line in enumerate(lines) if re.match(r"(stream|table) ", line))
    out = []
    for i, line in enumerate(lines):
        if i == first_decl:  # topics are declared before they are used
            out += ["topic extra_input: str"] + [f'topic "{t}"' for t in written]
        out.append(line)
        out.extend(extras.get(i, []))
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("mode", ["appended", "interleaved"])
@pytest.mark.parametrize("example", FLOW_EXAMPLES, ids=lambda p: p.stem)
@pytest.mark.usefixtures("examples_importable")
def test_adding_unrelated_steps_to_a_flow_file_renames_no_topic_or_store(example, mode, tmp_path):
    """Claim: adding (or, read backwards, removing) unrelated steps keeps every internal topic and
    store name. The `.py` twins are extended the same way in test_invariants.py."""
    extended_file = tmp_path / example.name
    extended_file.write_text(extended_flow_source(example.read_text(), mode))
    original, extended = load_pipeline(str(example)), load_pipeline(str(extended_file))
    before, after = state_names(original), state_names(extended)
    assert {k: after.get(k) for k in before} == before
    assert len(after) > len(before)  # the extra steps did add state of their own
    assert len(extended.topology()) > len(original.topology()) + 3


def test_a_stateless_step_inserted_before_a_stateful_one_keeps_its_names():
    """Claim: an unnamed stateless step is not an anchor, so inserting one (here a filter between
    `large` and its group_by) renames nothing after it."""
    assert internal(fraud(extra_filter=True)) == internal(fraud())


def test_settings_and_parameters_are_not_part_of_any_name():
    """Claim: partition counts, window sizes and other parameters never enter a name (changing
    them may still be incompatible with the state; that is the plan diff's concern, not naming)."""
    assert internal(fraud(size="5m", grace="10s", partitions=8, function="max", threshold=10)) == internal(fraud())


# --------------------------------------------------------------------------- edits that rename


def test_renaming_a_stateful_step_renames_its_store_and_changelog_only():
    before, after = internal(fraud()), internal(fraud(aggregate="per_acct"))
    assert sorted(set(before) - set(after)) == ["store per_account", "topic fraud-per_account-changelog"]
    assert sorted(set(after) - set(before)) == ["store per_acct", "topic fraud-per_acct-changelog"]


def test_renaming_an_anchor_renames_the_unnamed_steps_derived_from_it():
    """Claim: an unnamed group_by is named from its anchor (`large.by_account_id`), so renaming the
    anchor renames its repartition topic; the named aggregate keeps its store."""
    before, after = internal(fraud()), internal(fraud(anchor="big"))
    assert sorted(set(before) - set(after)) == ["topic fraud-large.by_account_id-repartition"]
    assert sorted(set(after) - set(before)) == ["topic fraud-big.by_account_id-repartition"]


def test_naming_a_step_pins_its_names_against_renamed_anchors_and_keys():
    """Claim: a step given name= keeps its topics whatever its anchor or key is called."""
    pinned = internal(fraud(group_by="by_account"))
    assert internal(fraud(anchor="big", key="country", group_by="by_account")) == pinned
    assert "topic fraud-by_account-repartition" in pinned


def test_an_unnamed_stateful_step_is_renamed_with_its_key():
    """Claim: the derived name of a group_by says its key, so changing the key renames its topic."""
    before, after = internal(fraud()), internal(fraud(key="country"))
    assert sorted(set(before) - set(after)) == ["topic fraud-large.by_account_id-repartition"]
    assert sorted(set(after) - set(before)) == ["topic fraud-large.by_country-repartition"]


def test_renaming_the_pipeline_renames_every_internal_topic_and_no_store():
    before, after = state_names(fraud()), state_names(fraud(pipeline="fraud2"))
    assert sorted(k for k in before if k.startswith("store")) == sorted(k for k in after if k.startswith("store"))
    assert sorted(k for k in after if k.startswith("topic")) == [
        "topic fraud2-dead-letters", "topic fraud2-large.by_account_id-repartition",
        "topic fraud2-per_account-changelog"]


def joined(name: str) -> Flow:
    flow = Flow("ads")
    imps = flow.source("impressions", value=W)
    clicks = flow.source("clicks", value=W)
    imps.join(clicks, within="10m", on="account_id", right_on="account_id", name=name).to("out")
    return flow


def test_a_join_side_owns_its_repartition_topic_and_store_under_one_name():
    """Claim: `<join>.left` and `<join>.right` own everything of a side, with the same separators
    as every other owner; renaming the join renames them all."""
    assert internal(joined("matched")) == [
        "store matched.left", "store matched.right",
        "topic ads-dead-letters",
        "topic ads-matched.left-changelog", "topic ads-matched.left-repartition",
        "topic ads-matched.right-changelog", "topic ads-matched.right-repartition"]
    assert internal(joined("m")) == [name.replace("matched", "m") for name in internal(joined("matched"))]


# --------------------------------------------------------------------------- numbering


def test_sub_topologies_are_numbered_writers_before_readers():
    """The orders example: the join's sub-topology reads the repartition topic that the `orders`
    sub-topology writes, so it comes second, though its first node sorts first."""
    p = plan(load_pipeline(str(ROOT / "examples" / "orders.flow")).topology())
    assert [(a.index, a.name, a.output_topics) for a in p.agents] == [
        (0, "orders", ("orders-enriched.left-repartition",)),
        (1, "customers", ("enriched-orders",))]
    assert p.agents[1].source_topics == ("customers", "orders-enriched.left-repartition")


@pytest.mark.usefixtures("examples_importable")
@pytest.mark.parametrize("example", FLOW_EXAMPLES, ids=lambda p: p.stem)
def test_no_example_reads_a_topic_written_by_a_later_sub_topology(example):
    agents = plan(load_pipeline(str(example)).topology()).agents
    for reader in agents:
        for topic in reader.source_topics:
            assert all(w.index <= reader.index for w in agents if topic in w.output_topics)


def test_independent_sub_topologies_are_numbered_by_agent_name_whatever_their_position():
    flow = Flow("app")
    flow.source("zebra", value=W).group_by("account_id").count(name="z").changes().to("z-out")
    flow.source("apple", value=W).group_by("account_id").count(name="a").changes().to("a-out")
    assert [a.name for a in plan(flow.topology()).agents] == [
        "apple", "apple.by_account_id.repartition", "zebra", "zebra.by_account_id.repartition"]


def test_a_sink_topic_read_back_by_the_pipeline_orders_its_readers_after_it():
    flow = Flow("app")
    flow.source("b-in", value=W).to("a-mid")
    flow.source("a-mid", value=W).to("out")
    assert [(a.index, a.name) for a in plan(flow.topology()).agents] == [(0, "b-in"), (1, "a-mid")]


def test_a_self_join_reading_its_own_repartition_is_one_sub_topology():
    flow = Flow("app")
    s = flow.source("s", key=str, value=W)
    s.join(s.select_key("country"), within="1m", name="j").to("out")
    agents = plan(flow.topology()).agents
    assert [(a.index, a.name, a.source_topics, a.output_topics) for a in agents] == [
        (0, "j.right.repartition", ("app-j.right-repartition", "s"), ("app-j.right-repartition", "out"))]


def test_sub_topologies_that_read_each_other_are_numbered_by_name():
    """`s` feeds a count through one repartition; the count's changes come back through a join
    side's repartition: a circle of two sub-topologies, ordered by their agents' names."""
    flow = Flow("app")
    s = flow.source("s", key=str, value=W)
    back = s.group_by("account_id").count(name="counts").changes().select_key(key())
    s.join(back.map({"n": col("count")}), within="1m", name="j").to("out")
    agents = plan(flow.topology()).agents
    assert [(a.index, a.name, a.source_topics, a.output_topics) for a in agents] == [
        (0, "j.right.repartition", ("app-j.right-repartition", "s"), ("app-s.by_account_id-repartition", "out")),
        (1, "s.by_account_id.repartition", ("app-s.by_account_id-repartition",), ("app-j.right-repartition",))]


def test_numbers_and_agent_names_are_not_names_of_state():
    """Claim: a new source that sorts first renumbers the sub-topologies; no topic or store moves."""
    before = fraud()
    after = fraud()
    after.source("aaa", value=W).to("aaa-out")
    assert [a.name for a in plan(before.topology()).agents] == ["withdrawals", "large.by_account_id.repartition"]
    assert [a.name for a in plan(after.topology()).agents] == [
        "aaa", "withdrawals", "large.by_account_id.repartition"]
    assert internal(after) == internal(before)


# --------------------------------------------------------------------------- the duplicate-name rule

SHOP = """pipeline shop

record Order {
  order_id: str
  customer_id: str
}

topic orders: Order key str
topic "shop-orders.by_customer_id-repartition": Order key str
topic "shop-dead-letters"

table per_customer = orders | group_by customer_id | aggregate { n: count() }
per_customer.changes | to topic "shop-dead-letters"
stream copied = topic "shop-orders.by_customer_id-repartition" | to stdout
"""

HINT = ("rename the topic: PIPELINE-STEP-repartition, PIPELINE-STEP-changelog and PIPELINE-dead-letters are the "
        "names of the planner's topics")


def test_a_user_topic_named_like_a_planner_topic_is_an_error_at_its_declaration(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("shop.flow").write_text(SHOP)
    result = CliRunner().invoke(app, ["check", "shop.flow"])
    assert result.exit_code == 1
    assert result.stderr == (
        "shop.flow:13:24: error: topic 'shop-dead-letters' has the name of the dead-letter topic of the pipeline, "
        f"which the planner adds; {HINT}\n"
        'per_customer.changes | to topic "shop-dead-letters"\n'
        "                       ^~~~~~~~~~~~~~~~~~~~~~~~~~~~\n"
        "shop.flow:14:17: error: topic 'shop-orders.by_customer_id-repartition' has the name of the repartition "
        f"topic of 'orders.by_customer_id', which the planner adds; {HINT}\n"
        'stream copied = topic "shop-orders.by_customer_id-repartition" | to stdout\n'
        "                ^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~\n"
        "2 errors\n")


@pytest.mark.parametrize("use", ["source", "table", "sink", "through", "echo"])
def test_every_kind_of_user_topic_is_checked_against_planner_topics(use):
    flow = Flow("app")
    w = flow.source("w", value=W)
    w.group_by("account_id").count(name="n")
    taken = "app-n-changelog"
    if use == "source":
        flow.source(taken, value=W).to("out")
    elif use == "table":
        flow.table(taken, key=str, value=W).changes().to("out")
    elif use == "sink":
        w.to(taken)
    elif use == "through":
        w.through(taken).to("out")
    else:
        w.echo(taken).to("out")
    assert [d.message for d in plan_errors(flow)] == [
        "topic 'app-n-changelog' has the name of the changelog of store 'n', which the planner adds"]


def test_a_user_step_named_like_a_planner_step_is_an_error_at_the_step():
    flow = Flow("app")
    w = flow.source("w", value=W)
    w.group_by("account_id", name="g").count(name="n")
    w.filter(col("amount") > 1, name="g.repartition").to("out")
    assert [d.message for d in plan_errors(flow)] == [
        "step 'g.repartition' has the name of the repartition step of 'g', which the planner adds"]


def test_a_step_named_like_a_join_side_would_share_its_store():
    """A join side owns `<join>.left`; a step given that name would own the same store."""
    flow = Flow("app")
    a, b = flow.source("a", key=str, value=W), flow.source("b", key=str, value=W)
    a.join(b, within="1m", name="j").to("out")
    b.group_by("account_id").count(name="j.left")
    assert [(d.message, d.hint) for d in plan_errors(flow)] == [
        ("'j.left' and 'j' would share the store 'j.left'", "give one of them another name=")]


def plan_errors(flow: Flow) -> list:
    from dataflow.planner import check
    return check(flow.topology())
