"""Damage one record of a local log on purpose, for the tests of storage faults and repair."""
from __future__ import annotations

import random
import string
from pathlib import Path

import msgpack
import orjson
import plyvel


def corrupt_record(data_dir: Path, topic: str, partition: int, offset: int, count: int,
                   commits: dict[str, int] | None = None) -> Path:
    """Write `count` records (offsets from 0) of incompressible text to topic[partition], each
    larger than a LevelDB block, and `commits` (group -> offset) on it; move them into a table
    file and flip bytes inside record `offset`: exactly that record's block is damaged.
    Returns the damaged file."""
    rng = random.Random(11)
    values = [orjson.dumps("".join(rng.choices(string.ascii_letters, k=6000))) for _ in range(count)]
    db = plyvel.DB(str(data_dir / "log"), create_if_missing=True)
    try:
        with db.write_batch(sync=True) as batch:
            for i, value in enumerate(values):  # the local log's layout: see dataflow/transport/local.py
                batch.put(f"m/{topic}/{partition}/".encode() + i.to_bytes(8, "big"),
                          msgpack.packb((1, None, value, None), use_bin_type=True))
            for group, committed in (commits or {}).items():
                batch.put(f"c/{topic}/{partition}/{group}".encode(), committed.to_bytes(8, "big"))
        db.compact_range()
    finally:
        db.close()
    for table in sorted((data_dir / "log").glob("*.ldb")):
        data = bytearray(table.read_bytes())
        at = data.find(values[offset][100:200])
        if at >= 0:
            data[at:at + 50] = bytes(b ^ 0xFF for b in data[at:at + 50])
            table.write_bytes(bytes(data))
            return table
    raise AssertionError("record not found in any table file")
