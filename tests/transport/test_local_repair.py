"""`repair_log`: lost ranges with the groups that had not read them, and a log whose end stays
at its highest commit when its last records are lost."""
from __future__ import annotations

from pathlib import Path

from dataflow.transport.base import TP, ProducerRecord, TopicSpec
from dataflow.transport.local import LocalTransport
from dataflow.transport.local_repair import check_log, repair_log
from tests.local_log_damage import corrupt_record


async def test_losing_the_last_record_keeps_the_end_at_the_commit(tmp_path: Path) -> None:
    async with LocalTransport(tmp_path) as transport:
        await transport.create_topics([TopicSpec("orders", 1)])
    corrupt_record(tmp_path, "orders", 0, offset=9, count=10, commits={"early": 3, "late": 10})
    assert check_log(tmp_path).corrupt

    report = repair_log(tmp_path)
    assert report.lines() == [
        f"local log {tmp_path}/log was corrupt (block checksum mismatch); repaired: 9 records kept",
        "  orders partition 0: lost offset 9 (1 record; not yet read by early: those records are gone)",
        f"  the damaged files are kept in {tmp_path}/log/lost",
    ]
    async with LocalTransport(tmp_path) as transport:
        # "late" committed 10: a record appended now must not land below that commit.
        assert transport.log.end_offset(TP("orders", 0)) == 10
        async with transport.producer() as producer:
            assert await producer.send(ProducerRecord("orders", None, b"1")) == (0, 10)


async def test_a_range_every_group_had_read(tmp_path: Path) -> None:
    async with LocalTransport(tmp_path) as transport:
        await transport.create_topics([TopicSpec("orders", 1)])
    corrupt_record(tmp_path, "orders", 0, offset=2, count=6, commits={"app": 6})
    assert repair_log(tmp_path).lines()[1] == "  orders partition 0: lost offset 2 (1 record; already read by app)"
    assert not check_log(tmp_path).corrupt
