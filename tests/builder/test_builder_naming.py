"""Naming rules of the builder: names are given or derived from anchors, never counted where it matters."""
from __future__ import annotations

from pathlib import Path

import pytest

from dataflow import Flow, Record, agg, col, hopping, tumbling
from dataflow.planner import plan

HERE = Path(__file__).resolve().relative_to(Path(__file__).resolve().parents[2]).as_posix()


def line_of(marker: str) -> int:
    """The line of this file that carries the comment `# @marker`."""
    lines = Path(__file__).read_text().splitlines()
    hits = [i for i, text in enumerate(lines, 1) if text.rstrip().endswith(f"# @{marker}")]
    assert len(hits) == 1, marker
    return hits[0]


class W(Record):
    account_id: str
    amount: float


def names(flow: Flow) -> list[str]:
    return sorted(node.name for node in flow.topology().nodes())


def internal_names(flow: Flow) -> tuple[list[str], list[str]]:
    p = plan(flow.topology())
    return sorted(t.name for t in p.topics if t.internal), sorted(s.name for s in p.stores)


# --------------------------------------------------------------------------- anchors


def test_sources_are_named_for_their_topic_or_given_name():
    flow = Flow("app")
    flow.source("withdrawals").to("a")
    flow.source("withdrawals", name="again").to("b")
    assert names(flow) == ["again", "again.to_b", "withdrawals", "withdrawals.to_a"]


def test_unnamed_stateless_steps_are_named_from_the_nearest_anchor():
    flow = Flow("app")
    flow.source("w", value=W).filter(col("amount") > 1).map({"a": col("account_id")}).group_by("a").count()
    assert names(flow) == ["w", "w.by_a", "w.by_a.aggregate", "w.filter", "w.map"]


def test_a_named_step_is_the_anchor_of_what_follows():
    flow = Flow("app")
    large = flow.source("w", value=W).filter(col("amount") > 1000, name="large")
    large.group_by("account_id").window(tumbling("1m")).aggregate(total=agg.sum("amount"))
    assert names(flow) == ["large", "large.by_account_id", "large.by_account_id.tumbling_1m",
                           "large.by_account_id.tumbling_1m.aggregate", "w"]


def test_step_names_say_what_the_step_does():
    flow = Flow("app")
    s = flow.source("w", value=W)
    s.select_key("account_id").to_table().changes().to("t")
    s.window(hopping("10m", "1m")).count(name="hops")
    s.through("mid").print()
    s.to_file("out.jsonl")
    assert names(flow) == [
        "hops", "w", "w.hopping_10m_1m", "w.key_account_id", "w.key_account_id.table",
        "w.key_account_id.table.changes", "w.key_account_id.table.to_t", "w.through_mid",
        "w.through_mid.print", "w.to_file",
    ]


def test_stateless_siblings_get_a_suffix():
    flow = Flow("app")
    s = flow.source("w", value=W)
    s.filter(col("amount") > 1).to("a")
    s.filter(col("amount") > 2).to("b")
    s.filter(col("amount") > 3).to("c")
    assert names(flow) == ["w", "w.filter", "w.filter_2", "w.filter_3", "w.to_a", "w.to_b", "w.to_c"]


def test_a_suffix_skips_names_already_given():
    # Suffixes continue from the last one handed out; a name given by hand in between is skipped.
    flow = Flow("app")
    s = flow.source("w", value=W)
    s.filter(col("amount") > 1).to("a")
    s.filter(col("amount") > 2).to("b")
    s.filter(col("amount") > 3, name="w.filter_3").to("c")
    s.filter(col("amount") > 4).to("d")
    s.filter(col("amount") > 5).to("e")
    assert [n for n in names(flow) if ".filter" in n and ".to_" not in n] == [
        "w.filter", "w.filter_2", "w.filter_3", "w.filter_4", "w.filter_5"]
    assert flow.topology().successors("w.filter_4") == ["w.to_d"]


def test_two_stateful_steps_with_one_derived_name_are_an_error():
    flow = Flow("app")
    s = flow.source("w", value=W)
    s.group_by("account_id").count(name="c1").changes().to("a")
    with pytest.raises(ValueError) as e:
        s.group_by("account_id").count(name="c2")  # @stateful-clash
    assert str(e.value) == (
        f"{HERE}:{line_of('stateful-clash')}: this step would be named 'w.by_account_id' like an earlier one; "
        "its topic or store name derives from it, so give it a name: .group_by(..., name=\"...\")")


def test_a_given_name_resolves_the_clash():
    flow = Flow("app")
    s = flow.source("w", value=W)
    s.group_by("account_id").count(name="c1").changes().to("a")
    s.group_by("account_id", name="again").count(name="c2").changes().to("b")
    assert "again" in names(flow)


def test_a_given_name_must_be_unique():
    flow = Flow("app")
    s = flow.source("w", value=W)
    s.filter(col("amount") > 1, name="big").to("a")
    with pytest.raises(ValueError) as e:
        s.filter(col("amount") > 2, name="big")  # @given-clash
    assert str(e.value) == f"{HERE}:{line_of('given-clash')}: a step named 'big' already exists; names must be unique"


def test_a_second_source_with_the_same_name_is_an_error():
    flow = Flow("app")
    flow.source("w")
    with pytest.raises(ValueError) as e:
        flow.source("w")  # @source-clash
    assert str(e.value) == (f"{HERE}:{line_of('source-clash')}: a step named 'w' already exists; "
                            "give this one another name=")


def test_the_pipeline_name_is_checked():
    with pytest.raises(ValueError, match="may use letters, digits"):
        Flow("my app")


# --------------------------------------------------------------------------- the invariant behind the rules
# Anchors (branch, merge, select_key, ...) name what follows them, and topics and stores derive
# from those names. So an anchor's derived name must never carry a counted suffix: adding an
# unrelated branch earlier in the file would otherwise rename the state of a later one
# (KAFKA-9072). A clash is an error asking for name= instead.


@pytest.mark.parametrize("step", ["branch", "select_key", "merge"])
def test_anchors_never_get_a_counted_suffix(step):
    def build(extra: bool) -> Flow:
        flow = Flow("app")
        s = flow.source("w", value=W)
        v = flow.source("v", value=W)
        v.to("copy")
        if extra:  # an unrelated step written before the existing one
            {"branch": lambda: s.branch(big=col("amount") > 5).big.to("other"),
             "select_key": lambda: s.select_key("account_id").to("other"),
             "merge": lambda: s.merge(v).to("other")}[step]()
        head = {"branch": lambda: s.branch(big=col("amount") > 1).big,
                "select_key": lambda: s.select_key("account_id"),
                "merge": lambda: s.merge(v)}[step]()
        head.group_by("account_id").count().changes().to("out")
        return flow

    before = internal_names(build(False))
    with pytest.raises(ValueError, match=r"give it a name: \.\w+\(\.\.\., name="):
        after = internal_names(build(True))
        assert after == before  # what must hold if the builder ever allows the clash


def test_a_named_join_names_its_implicit_rekeys():
    """join(on=..., right_on=...) re-keys both sides; with name= the re-keys are named from it, so two
    joins of the same streams on the same fields need nothing but their own names."""
    flow = Flow("app")
    a = flow.source("a", value=W)
    b = flow.source("b", value=W)
    a.join(b, on="account_id", right_on="account_id", within="1m", name="j1").to("x")
    a.join(b, on="account_id", right_on="account_id", within="5m", name="j2").to("y")
    assert names(flow) == ["a", "b", "j1", "j1.left_key", "j1.right_key", "j1.to_x", "j2", "j2.left_key",
                           "j2.right_key", "j2.to_y"]
