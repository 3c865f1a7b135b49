"""The pure core of `runtime.watermarks` against brute-force references (hypothesis)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dataflow.runtime.watermarks import HEADER, HEARTBEAT, Progress, decode, encode, split
from dataflow.transport.base import Message

ORIGINS = ["a[0]", "a[1]", "b[0]"]

updates = st.lists(st.tuples(st.sampled_from([*ORIGINS, "stranger[9]"]),
                             st.one_of(st.none(), st.integers(-1_000, 1_000)), st.booleans(),
                             st.booleans()), max_size=40)


@given(updates)
def test_progress_is_the_lowest_of_every_expected_origins_highest_report(reports):
    progress = Progress(ORIGINS)
    highest: dict[str, int] = {}
    ended: set[str] = set()
    idle: set[str] = set()
    for origin, mark, end, quiet in reports:
        before = progress.watermark
        moved = progress.update(origin, mark, end, quiet)
        if origin in ORIGINS:
            if mark is not None:
                highest[origin] = max(highest.get(origin, mark), mark)
            if end:
                ended.add(origin)
            (idle.add if quiet else idle.discard)(origin)
        active = [o for o in ORIGINS if o not in idle]
        if not active:  # all idle: as far as any reported
            expected = min(highest.values()) if highest else None
        else:
            expected = min(highest[o] for o in active) if all(o in highest for o in active) else None
        assert progress.watermark == expected
        assert moved == (expected != before)
        assert progress.finished == (ended == set(ORIGINS))
        assert progress.snapshot() == {o: [highest.get(o), o in idle] for o in sorted(highest.keys() | idle)}


@given(updates, updates)
def test_progress_restored_from_a_snapshot_judges_as_the_original(first, then):
    original = Progress(ORIGINS)
    for report in first:
        original.update(*report)
    restored = Progress(ORIGINS, original.snapshot())
    assert restored.watermark == original.watermark
    for origin, mark, _end, idle in then:
        assert restored.update(origin, mark, False, idle) == original.update(origin, mark, False, idle)
        assert restored.watermark == original.watermark


def _message(offset: int, kind: str) -> Message:
    if kind == "plain":
        return Message("r", 0, offset, None, b"1", 0)
    marks = ((HEADER, encode([("a[0]", offset, False, False)])),)
    if kind == "beat":
        return Message("r", 0, offset, None, None, 0, (*marks, (HEARTBEAT, b"")))
    if kind == "other":  # a header of someone else (an ask's reply address)
        return Message("r", 0, offset, None, b"1", 0, (("dataflow.reply-to", b"x"),))
    return Message("r", 0, offset, None, b"1", 0, marks)


@given(st.lists(st.sampled_from(["plain", "plain", "marked", "beat", "other"]), max_size=30))
def test_split_cuts_after_each_record_with_watermarks_and_drops_heartbeats(kinds):
    messages = [_message(i, kind) for i, kind in enumerate(kinds)]
    pieces = split(messages)
    # Every message that is not a heartbeat is in exactly one piece, in order.
    assert [m.offset for piece, _, _, _ in pieces for m in piece] == \
        [i for i, kind in enumerate(kinds) if kind != "beat"]
    # Pieces end where a message carries watermarks, and carry that message's.
    carriers = [i for i, kind in enumerate(kinds) if kind in ("marked", "beat")]
    marked = [(marks, beat) for _, marks, beat, _ in pieces if marks]
    assert marked == [([("a[0]", i, False, False)], kinds[i] == "beat") for i in carriers]
    for piece, marks, beat, _ in pieces:
        if marks and not beat:
            assert piece and piece[-1].offset == marks[0][1]  # the carrier ends its piece


@given(st.lists(st.tuples(st.sampled_from(ORIGINS), st.integers(0, 50), st.integers(1, 4)), min_size=1, max_size=40),
       st.randoms(use_true_random=False))
@settings(max_examples=200)
def test_a_record_on_time_where_it_came_from_is_on_time_where_it_lands(batches, rng):
    """Writers send batches (origin, time step, size); each batch's last record carries the
    origin's highest time so far. Whatever the interleaving of the writers, the watermark a
    reader judges a record by is never above the highest time its origin had read before it."""
    per_origin: dict[str, list[list[int]]] = {o: [] for o in ORIGINS}
    clock = {o: 0 for o in ORIGINS}
    for origin, step, size in batches:
        batch = []
        for _ in range(size):
            clock[origin] += rng.randrange(0, step + 1)
            batch.append(clock[origin] - rng.randrange(0, 5))  # a little disorder within an origin
        per_origin[origin].append(batch)
    # The repartition partition: whole batches, origins interleaved at random, each in order.
    queue = {o: list(bs) for o, bs in per_origin.items()}
    log: list[tuple[Message, str, int]] = []  # (message, origin, highest before its batch)
    seen = {o: None for o in ORIGINS}
    while any(queue.values()):
        origin = rng.choice([o for o in ORIGINS if queue[o]])
        batch = queue[origin].pop(0)
        before = seen[origin]
        seen[origin] = max(batch) if before is None else max(before, *batch)
        for i, ts in enumerate(batch):
            last = i == len(batch) - 1
            headers = ((HEADER, encode([(origin, seen[origin], False, False)])),) if last else ()
            log.append((Message("r", 0, len(log), None, b"1", ts, headers), origin, before))
    info = {m.offset: (origin, before) for m, origin, before in log}
    progress = Progress(ORIGINS)
    for piece, marks, _beat, _behind in split([m for m, _, _ in log]):
        for m in piece:
            origin, before = info[m.offset]
            judged = progress.watermark
            assert judged is None or (before is not None and judged <= before)
        for report in marks:
            progress.update(*report)
    # Once everything is read, the watermark is the slowest origin's highest time.
    written = [o for o in ORIGINS if per_origin[o]]
    assert progress.watermark == (min(seen[o] for o in ORIGINS) if len(written) == len(ORIGINS) else None)


def test_header_values_round_trip():
    entries = [("t[0]", -5, True, False), ("t[1]", None, False, True)]
    assert decode(encode(entries)) == entries
