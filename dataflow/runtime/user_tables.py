"""Tables for Python agents: Faust's ``app.Table``, ``app.SetTable`` and windowed tables.

A table is a dict partitioned like the stream that updates it, kept in the same state
layer as the tables of compiled pipelines (:mod:`dataflow.state.table` partitions over
memory or LevelDB stores, opened, recovered and committed by a
:class:`~dataflow.runtime.state.StateManager`), with one compacted changelog topic,
``<app>-<table>-changelog``.

>>> import asyncio
>>> from dataflow.runtime.app import App
>>> app = App("words", topic_partitions=2)
>>> counts = app.Table("counts", default=int)
>>> @app.agent(app.topic("lines"))
... async def count(stream):
...     async for line in stream:
...         for word in line.split():
...             counts[word] += 1
>>> async def main():
...     await app.start()
...     await app.topic("lines").send_many([(None, "a b a"), (None, "b a")])
...     await app.run_until_idle(stop=False)
...     try:
...         return sorted(counts.items())
...     finally:
...         await app.stop()
>>> asyncio.run(main())
[('a', 3), ('b', 2)]

**Partitions.** A write inside an agent goes to the partition of the event being
processed (:func:`~dataflow.runtime.events.current_event`), so a key's updates stay with
the partition its events come from; outside an event (a timer, a task) it goes to
``partition_for(key, partitions)``, where a topic with JSON keys would put that key.
Table partitions are open while this app owns the same-numbered partitions of the topics
it reads (partitions beyond every topic's count go with partition 0 of the first topic);
an app that reads no topic opens them all.

**Commits** (see :mod:`dataflow.runtime.state`): at each app commit the changelog gets
one record per key changed since the previous commit, and is flushed before the consumer
offsets are committed (on the embedded local log, in the same atomic write); then the
stores are written with the changelog offset they reach. Opening a partition replays
its changelog from the store's recorded offset, so a restarted app, or one whose store
directory was deleted, sees its tables as they were committed.
"""
from __future__ import annotations

import asyncio
import logging
import operator
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, MutableSet
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from dataflow.planner.naming import changelog_topic
from dataflow.runtime.events import Event, current_event
from dataflow.runtime.state import StateManager
from dataflow.runtime.tables import Table as StoreTable
from dataflow.runtime.tables import TableNotAssigned
from dataflow.runtime.windows import WindowSpec
from dataflow.state.table import ABSENT, PLAIN_KEYS, WINDOWED_KEYS, TablePartition
from dataflow.transport.base import TP, Consumer, TopicSpec, partition_for

if TYPE_CHECKING:
    from dataflow.runtime.app import App

__all__ = ["SetTable", "Table", "TableManager", "TableSet", "WindowSet", "WindowWrapper"]

logger = logging.getLogger(__name__)

Seconds = float | int | timedelta
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS
_SCALARS = (str, int, bool, type(None))


def _ms(value: Any, what: str, *, point: bool = False) -> int:
    """Milliseconds of a duration (seconds as a number, or a timedelta) or, with ``point``,
    of a time as Faust gives them (epoch seconds as a number, or a datetime)."""
    kind = datetime if point else timedelta
    if isinstance(value, kind):
        seconds = value.timestamp() if isinstance(value, datetime) else value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value
    else:
        raise TypeError(f"{what} must be {'epoch ' if point else ''}seconds (a number) or a {kind.__name__}, "
                        f"not {type(value).__name__}")
    return round(seconds * 1000)


def _hashable(value: Any) -> Any:
    """JSON lists read back as tuples, so decoded keys and set members stay hashable."""
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


def _event_time(event: Event | None) -> int:
    """The timestamp (epoch ms) of the event's message."""
    if event is None:
        raise RuntimeError("operation outside of stream iteration: there is no current event; "
                           "hint: use wrapper.relative_to_now(), or pass event=")
    if event.message is None:
        raise RuntimeError("the current event came through a channel and has no timestamp; "
                           "hint: use wrapper.relative_to_now() or relative_to_field(...)")
    return event.message.timestamp


class _Collection:
    """What :class:`Table` and :class:`SetTable` share: naming, keys, partitions, storage."""

    def __init__(self, app: App, name: str, *, default: Callable[[], Any] | None = None,
                 partitions: int | None = None, help: str = "") -> None:  # noqa: A002 - Faust's name
        changelog = changelog_topic(app.name, name)
        TopicSpec(changelog, 1)  # checks the name: the changelog topic is named after it
        if partitions is not None and partitions < 1:
            raise ValueError(f"table {name!r} needs at least 1 partition, got {partitions}")
        self.app = app
        self.name = name
        self.default = default
        self.help = help
        self._partitions = partitions
        self.changelog_topic = changelog
        self._store = StoreTable(name, changelog)
        self._manager = app.tables
        self.window: WindowSpec | None = None

    @property
    def partitions(self) -> int:
        """How many partitions: as given, else the app's ``topic_partitions``."""
        return self._partitions or self.app.topic_partitions

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # -- keys and values -----------------------------------------------------------
    def _key_bytes(self, key: Any) -> bytes:
        try:
            return PLAIN_KEYS.encode(key)
        except TypeError as exc:
            raise TypeError(f"table {self.name!r}: key {key!r} is not JSON-serializable ({exc}); "
                            "hint: use str, int, float, bool, None or tuples of them") from None

    def _stored(self, key: Any, value: Any) -> Any:
        """``value`` as it will read back after a restart: checked, and copied through JSON
        (so a later change to the caller's object is not silently half-stored)."""
        if isinstance(value, _SCALARS):
            return value
        try:
            return orjson.loads(orjson.dumps(value, option=_JSON_OPTIONS))
        except TypeError as exc:
            raise TypeError(f"table {self.name!r}: the value for key {key!r} is not JSON-serializable ({exc}); "
                            "hint: table values are stored as JSON: use dict, list, str, int, float, bool, "
                            "None (or a Record, stored as a dict)") from None

    def _missing(self, key: Any) -> Any:
        if self.default is not None:
            return self.default()
        raise KeyError(key)

    # -- partitions ----------------------------------------------------------------
    def _part(self, partition: int) -> TablePartition:
        part = self._store.partitions.get(partition)
        if part is None:
            raise TableNotAssigned(self._manager.not_open(self, partition))
        return part

    def _event_partition(self) -> int | None:
        event = current_event()
        if event is None or event.message is None:
            return None
        partition = event.message.partition
        if partition >= self.partitions:
            raise TableNotAssigned(
                f"table {self.name!r} has {self.partitions} partitions, but the current event came from "
                f"{event.message.topic}[{partition}]; hint: give the table partitions= as many as its topic's")
        return partition

    def _write_part(self, key_bytes: bytes) -> TablePartition:
        partition = self._event_partition()
        if partition is None:
            partition = partition_for(key_bytes, self.partitions)
        return self._part(partition)

    def _locate(self, key_bytes: bytes, store_key: bytes) -> tuple[TablePartition | None, Any]:
        """Where ``store_key`` lives and its value (or :data:`ABSENT`): in the current event's
        partition; outside events, in the key's own partition, else in any open one (as Faust
        reads a key written from an event of another partition)."""
        partition = self._event_partition()
        if partition is not None:
            part = self._part(partition)
            return part, part.get(store_key)
        parts = self._store.partitions
        if not parts:
            raise TableNotAssigned(self._manager.not_open(self, None))
        home = partition_for(key_bytes, self.partitions)
        order = [parts[home]] if home in parts else []
        order += [part for p, part in sorted(parts.items()) if p != home]
        for part in order:
            value = part.get(store_key)
            if value is not ABSENT:
                return part, value
        return parts.get(home), ABSENT

    def _put(self, part: TablePartition, store_key: bytes, value: Any) -> None:
        part.put(store_key, value)
        self._manager.note_write(part, store_key, value)

    def _rows(self) -> Iterator[tuple[bytes, Any]]:
        """``(store key, value)`` of every open partition, in store-key order."""
        rows = [row for part in self._store.partitions.values() for row in self._live(part)]
        rows.sort(key=operator.itemgetter(0))
        return iter(rows)

    def _live(self, part: TablePartition) -> Iterator[tuple[bytes, Any]]:
        return part.range()


class Table(_Collection, MutableMapping[Any, Any]):
    """A partitioned, changelogged dict (Faust's ``app.Table``); make one with
    :meth:`App.Table <dataflow.runtime.app.App.Table>`.

    Keys and values must be JSON-serializable (values read back as JSON: tuples become
    lists, Records dicts). A missing key reads as ``default()`` when ``default`` is given,
    without being stored; ``t[k] += 1`` stores. Changing a stored list or dict in place
    is not seen: assign it again (``t[k] = value``).

    >>> from dataflow.runtime.app import App
    >>> app = App("shop")
    >>> totals = app.Table("totals", default=int, help="amount per account")
    >>> totals.partitions, totals.changelog_topic
    (8, 'shop-totals-changelog')
    >>> hourly = app.Table("hourly", default=int).tumbling(3600, expires=timedelta(days=1))
    >>> hourly.table.window
    WindowSpec(kind='tumbling', size=3600000, step=None, grace=0, expires=86400000)
    """

    # -- windowing -----------------------------------------------------------------
    def tumbling(self, size: Seconds, expires: Seconds | None = None) -> WindowWrapper:
        """Windows of ``size`` seconds back to back, ``[start, start + size)``, aligned to
        the epoch. Windows are deleted once the partition's stream time (its newest event
        time) passes their end plus ``expires`` (default: one day)."""
        return self._windowed(WindowSpec("tumbling", _ms(size, "size"), expires=self._expires(expires)))

    def hopping(self, size: Seconds, step: Seconds, expires: Seconds | None = None) -> WindowWrapper:
        """Windows of ``size`` seconds starting every ``step`` seconds: an event falls in
        ``size / step`` of them, and a write updates each."""
        size_ms, step_ms = _ms(size, "size"), _ms(step, "step")
        if not 0 < step_ms <= size_ms:
            raise ValueError(f"table {self.name!r}: a hopping step must be positive and at most the size")
        return self._windowed(WindowSpec("hopping", size_ms, step_ms, expires=self._expires(expires)))

    def sliding(self, before: Seconds, after: Seconds, expires: Seconds | None = None) -> WindowWrapper:
        """Faust's sliding windows: a write at time ``t`` goes to the window
        ``[t - before, t + after]`` of its own; reading at time ``t`` finds the window a
        write at that same time made."""
        before_ms, after_ms = _ms(before, "before"), _ms(after, "after")
        if before_ms < 0 or after_ms < 0:
            raise ValueError(f"table {self.name!r}: sliding window bounds must not be negative")
        return self._windowed(WindowSpec("sliding", before_ms + after_ms, expires=self._expires(expires)), before_ms)

    def _expires(self, expires: Seconds | None) -> int | None:
        return None if expires is None else _ms(expires, "expires")

    def _windowed(self, spec: WindowSpec, before: int = 0) -> WindowWrapper:
        if self.window is not None:
            raise ValueError(f"table {self.name!r} is already windowed; hint: declare another table")
        if self.app.started:
            raise RuntimeError(f"table {self.name!r} windowed after app {self.app.name!r} started")
        if spec.size <= 0 and spec.kind != "sliding":
            raise ValueError(f"table {self.name!r}: window size must be positive")
        self.window = spec
        self._before = before  # sliding windows start this long before their event
        self._store.keys = WINDOWED_KEYS
        return WindowWrapper(self)

    def _starts(self, ts: int) -> list[int]:
        """The starts of the windows holding time ``ts`` (epoch ms), oldest first."""
        assert self.window is not None
        if self.window.kind == "sliding":
            return [ts - self._before]
        return self.window.starts(ts)

    def _bounds(self, start: int) -> tuple[float, float]:
        """A window as users see it: ``(start, end)`` in epoch seconds."""
        assert self.window is not None
        return start / 1000, (start + self.window.size) / 1000

    # -- the mapping ---------------------------------------------------------------
    def _keys_of(self, key: Any) -> tuple[bytes, bytes]:
        """``(bytes that pick the partition, store key)`` of a mapping key; for a windowed
        table the mapping keys are ``(key, (start, end))``, as in Faust."""
        if self.window is None:
            data = self._key_bytes(key)
            return data, data
        try:
            user_key, (start, _end) = key
        except (TypeError, ValueError):
            raise KeyError(f"table {self.name!r} is windowed: its keys are (key, (start, end)); "
                           "hint: use the window wrapper: wrapper[key].current()") from None
        data = self._key_bytes(user_key)
        return data, WINDOWED_KEYS.start_bound(_ms(start, "a window start", point=True)) + data

    def _decode(self, store_key: bytes) -> Any:
        if self.window is None:
            return _hashable(orjson.loads(store_key))
        key, start = WINDOWED_KEYS.decode(store_key)
        return _hashable(key), self._bounds(start)

    def _live(self, part: TablePartition) -> Iterator[tuple[bytes, Any]]:
        if self.window is None or part.stream_time is None:
            return part.range()
        return part.range(WINDOWED_KEYS.start_bound(self.window.expired_before(part.stream_time)))

    def _get_raw(self, key: Any) -> Any:
        """The stored value, or :data:`ABSENT`."""
        return self._lookup(*self._keys_of(key))

    def _lookup(self, data: bytes, store_key: bytes) -> Any:
        """The value under a store key, or :data:`ABSENT`: an expired window that the next
        commit will delete is absent already."""
        part, value = self._locate(data, store_key)
        if value is not ABSENT and self.window is not None and part is not None \
                and self.window.is_expired(WINDOWED_KEYS.window_start(store_key), part.stream_time):
            return ABSENT
        return value

    def __getitem__(self, key: Any) -> Any:
        value = self._get_raw(key)
        return self._missing(key) if value is ABSENT else value

    def __setitem__(self, key: Any, value: Any) -> None:
        data, store_key = self._keys_of(key)
        self._put(self._write_part(data), store_key, self._stored(key, value))

    def __delitem__(self, key: Any) -> None:
        data, store_key = self._keys_of(key)
        part, value = self._locate(data, store_key)
        if value is ABSENT or part is None:
            raise KeyError(key)
        self._put(part, store_key, ABSENT)

    def __contains__(self, key: Any) -> bool:
        return self._get_raw(key) is not ABSENT

    def get(self, key: Any, default: Any = None) -> Any:
        """The stored value, or ``default`` (not ``default()`` of the table)."""
        value = self._get_raw(key)
        return default if value is ABSENT else value

    def pop(self, key: Any, *default: Any) -> Any:
        value = self._get_raw(key)
        if value is ABSENT:
            if default:
                return default[0]
            raise KeyError(key)
        del self[key]
        return value

    def setdefault(self, key: Any, default: Any = None) -> Any:
        value = self._get_raw(key)
        if value is ABSENT:
            self[key] = default
            return self._get_raw(key)
        return value

    def __iter__(self) -> Iterator[Any]:
        return (self._decode(store_key) for store_key, _ in self._rows())

    def __len__(self) -> int:
        return sum(1 for _ in self._rows())

    def items(self) -> list[tuple[Any, Any]]:  # type: ignore[override]
        """Every ``(key, value)`` of the partitions this app holds, in stored-key order."""
        return [(self._decode(store_key), value) for store_key, value in self._rows()]

    def values(self) -> list[Any]:  # type: ignore[override]
        return [value for _, value in self._rows()]

    # -- windowed operations (what WindowWrapper and WindowSet call) ----------------
    def _window_part(self, key: Any, ts: int) -> tuple[bytes, TablePartition]:
        data = self._key_bytes(key)
        part = self._write_part(data)
        before = part.stream_time
        if part.advance(ts) != before:
            self._manager.note_advance(part)
        return data, part

    def _apply_window_op(self, op: Callable[[Any, Any], Any], key: Any, value: Any, ts: int) -> None:
        """``window[key] = op(window[key], value)`` in every window holding ``ts``."""
        assert self.window is not None
        data, part = self._window_part(key, ts)
        for start in self._starts(ts):
            if self.window.is_expired(start, part.stream_time):
                continue  # it would be deleted at the next commit
            store_key = WINDOWED_KEYS.start_bound(start) + data
            current = part.get(store_key)
            if current is ABSENT:
                current = self._missing(key)
            self._put(part, store_key, self._stored(key, op(current, value)))

    def _assign_windows(self, key: Any, value: Any, ts: int) -> None:
        assert self.window is not None
        data, part = self._window_part(key, ts)
        stored = self._stored(key, value)
        for start in self._starts(ts):
            if not self.window.is_expired(start, part.stream_time):
                self._put(part, WINDOWED_KEYS.start_bound(start) + data, stored)

    def _del_windowed(self, key: Any, ts: int) -> None:
        data = self._key_bytes(key)
        for start in self._starts(ts):
            part, value = self._locate(data, WINDOWED_KEYS.start_bound(start) + data)
            if value is not ABSENT and part is not None:
                self._put(part, WINDOWED_KEYS.start_bound(start) + data, ABSENT)

    def _window_value(self, key: Any, start: int) -> Any:
        data = self._key_bytes(key)
        value = self._lookup(data, WINDOWED_KEYS.start_bound(start) + data)
        return self._missing(key) if value is ABSENT else value

    def _expire(self) -> None:
        """Delete (with changelog tombstones) the windows that expired at each partition's
        stream time."""
        window = self.window
        if window is None:
            return
        for part in self._store.partitions.values():
            if part.stream_time is None or not part.stream_time_changed:
                continue
            stop = WINDOWED_KEYS.start_bound(window.expired_before(part.stream_time))
            for store_key, _ in list(part.range(None, stop)):
                self._put(part, store_key, ABSENT)


class SetTable(_Collection):
    """A table of sets (Faust's ``app.SetTable``); make one with
    :meth:`App.SetTable <dataflow.runtime.app.App.SetTable>`.

    ``t[k]`` is a :class:`TableSet` view: ``t[k].add(x)``, ``t[k].discard(x)``,
    ``x in t[k]``, iteration (in sorted order), ``len``, and the set operators. Members
    must be JSON-serializable and hashable; sets are stored as sorted JSON lists, and a
    key whose set becomes empty is deleted.

    >>> from dataflow.runtime.app import App
    >>> app = App("visits")
    >>> pages = app.SetTable("pages")
    >>> pages
    <SetTable pages>
    """

    def __init__(self, app: App, name: str, *, partitions: int | None = None, help: str = "") -> None:  # noqa: A002
        super().__init__(app, name, default=set, partitions=partitions, help=help)

    def _members(self, key: Any) -> tuple[TablePartition | None, list[Any]]:
        data = self._key_bytes(key)
        part, value = self._locate(data, data)
        return part, [] if value is ABSENT else value

    def _store_members(self, key: Any, members: Iterable[Any]) -> None:
        data = self._key_bytes(key)
        unique = set(members)
        if not unique:
            part, value = self._locate(data, data)
            if value is not ABSENT and part is not None:
                self._put(part, data, ABSENT)
            return
        try:
            ordered = sorted(unique)
        except TypeError:  # mixed types: still one order, whatever the insertion order was
            ordered = sorted(unique, key=lambda m: (type(m).__name__, orjson.dumps(m, option=_JSON_OPTIONS)))
        self._put(self._write_part(data), data, self._stored(key, ordered))

    def __getitem__(self, key: Any) -> TableSet:
        return TableSet(self, key)

    def __setitem__(self, key: Any, members: Iterable[Any]) -> None:
        if isinstance(members, TableSet) and members.table is self and members.key == key:
            return  # `t[k] |= {...}` assigns the view back to itself: already stored
        self._store_members(key, members)

    def __delitem__(self, key: Any) -> None:
        data = self._key_bytes(key)
        part, value = self._locate(data, data)
        if value is ABSENT or part is None:
            raise KeyError(key)
        self._put(part, data, ABSENT)

    def __contains__(self, key: Any) -> bool:
        data = self._key_bytes(key)
        return self._locate(data, data)[1] is not ABSENT

    def __iter__(self) -> Iterator[Any]:
        return (_hashable(orjson.loads(key)) for key, _ in self._rows())

    def __len__(self) -> int:
        return sum(1 for _ in self._rows())

    def keys(self) -> list[Any]:
        return list(self)

    def items(self) -> list[tuple[Any, set[Any]]]:
        """``(key, set)`` pairs (plain sets: copies)."""
        return [(_hashable(orjson.loads(key)), {_hashable(m) for m in value}) for key, value in self._rows()]

    def values(self) -> list[set[Any]]:
        return [members for _, members in self.items()]


class TableSet(MutableSet[Any]):
    """The set stored under one key of a :class:`SetTable`: every change is written back."""

    def __init__(self, table: SetTable, key: Any) -> None:
        self.table = table
        self.key = key

    def _load(self) -> list[Any]:
        return [_hashable(m) for m in self.table._members(self.key)[1]]

    def __contains__(self, member: object) -> bool:
        return member in set(self._load())

    def __iter__(self) -> Iterator[Any]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def add(self, member: Any) -> None:
        members = self._load()
        if member not in set(members):
            self.table._store_members(self.key, [*members, _hashable(self.table._stored(self.key, member))])

    def discard(self, member: Any) -> None:
        members = set(self._load())
        if member in members:
            members.discard(member)
            self.table._store_members(self.key, members)

    def __repr__(self) -> str:
        return f"TableSet({set(self._load())!r})"


def _in_place(op: Callable[[Any, Any], Any]) -> Callable[[WindowSet, Any], WindowSet]:
    """``window_set op= value``: apply ``op`` in every window of the wrapper's time."""
    def method(self: WindowSet, other: Any) -> WindowSet:
        return self.apply(op, other)
    return method


class WindowSet:
    """The windows of one key of a windowed table (Faust's ``WindowSet``).

    * ``value()``: the window holding the wrapper's time (the event's timestamp, unless
      the wrapper is ``relative_to_now()``/``relative_to_field(...)``/``relative_to(...)``);
    * ``current()``: the window holding the current event's timestamp;
    * ``delta(d)``: the window holding the event's timestamp minus ``d`` seconds;
    * ``now()``: the oldest window holding "now": in an event, the partition's stream
      time (its newest event time), elsewhere the wall clock.

    Hopping windows overlap: ``value``, ``current`` and ``delta`` read the newest window
    holding the time, ``now`` the oldest (as Faust does). ``ws += 1`` (and ``-=``,
    ``*=``, ``|=``, ...) updates every window holding the wrapper's time.
    """

    def __init__(self, key: Any, table: Table, wrapper: WindowWrapper, event: Event | None = None) -> None:
        self.key = key
        self.table = table
        self.wrapper = wrapper
        self.event = event

    def apply(self, op: Callable[[Any, Any], Any], value: Any, event: Event | None = None) -> WindowSet:
        self.table._apply_window_op(op, self.key, value, self.wrapper.get_timestamp(event or self.event))
        return self

    def value(self, event: Event | None = None) -> Any:
        return self._at(self.wrapper.get_timestamp(event or self.event))

    def current(self, event: Event | None = None) -> Any:
        return self._at(_event_time(event or self.event or current_event()))

    def delta(self, d: Seconds, event: Event | None = None) -> Any:
        return self._at(_event_time(event or self.event or current_event()) - _ms(d, "delta"))

    def now(self) -> Any:
        return self.table._window_value(self.key, self.table._starts(self.wrapper.now_ms(self.event))[0])

    def _at(self, ts: int) -> Any:
        return self.table._window_value(self.key, self.table._starts(ts)[-1])

    def __getitem__(self, w: Any) -> Any:
        """``ws[event]``: this window set relative to another event; ``ws[(start, end)]``:
        the value of that window."""
        if isinstance(w, Event):
            return type(self)(self.key, self.table, self.wrapper, w)
        return self.table[self.key, w]

    __iadd__ = _in_place(operator.add)
    __isub__ = _in_place(operator.sub)
    __imul__ = _in_place(operator.mul)
    __itruediv__ = _in_place(operator.truediv)
    __ifloordiv__ = _in_place(operator.floordiv)
    __imod__ = _in_place(operator.mod)
    __ipow__ = _in_place(operator.pow)
    __iand__ = _in_place(operator.and_)
    __ior__ = _in_place(operator.or_)
    __ixor__ = _in_place(operator.xor)

    def __repr__(self) -> str:
        return f"<WindowSet {self.table.name}[{self.key!r}]>"


RelativeArg = Callable[[Event | None], Any] | datetime | float | int | None


class WindowWrapper:
    """A windowed table as agents use it (Faust's ``WindowWrapper``): ``wrapper[key]`` is
    a :class:`WindowSet`; ``wrapper[key] = v`` and ``wrapper[key] += 1`` write every window
    the current event falls in; ``del wrapper[key]`` deletes them.

    Times follow Faust: window sizes in seconds (or timedeltas), and the time of a write
    is the event's timestamp unless the wrapper says otherwise:

    * ``relative_to_stream()``: the event's timestamp (the default);
    * ``relative_to_now()``: "now": the partition's stream time in an event, else the
      wall clock;
    * ``relative_to_field(name)``: a field of the event's value (a Record attribute or a
      dict key) holding epoch seconds or a datetime;
    * ``relative_to(ts)``: a fixed time (epoch seconds or datetime) or a function of the
      event returning one.

    ``keys()``, ``items()`` and ``values()`` list the keys with a window and their values
    at the wrapper's time; ``wrapper.table`` is the underlying table, whose keys are
    ``(key, (start, end))`` in epoch seconds.
    """

    def __init__(self, table: Table, relative_to: Callable[[Event | None], int] | None = None) -> None:
        self.table = table
        self._relative = relative_to

    @property
    def name(self) -> str:
        return self.table.name

    def __repr__(self) -> str:
        return f"<WindowWrapper {self.table.name} {self.table.window}>"

    # -- which time ----------------------------------------------------------------
    def clone(self, relative_to: Callable[[Event | None], int] | None) -> WindowWrapper:
        return type(self)(self.table, relative_to)

    def relative_to_now(self) -> WindowWrapper:
        return self.clone(self.now_ms)

    def relative_to_stream(self) -> WindowWrapper:
        return self.clone(_event_time)

    def relative_to_field(self, field: str) -> WindowWrapper:
        def field_time(event: Event | None) -> int:
            if event is None:
                raise RuntimeError(f"relative_to_field({field!r}) outside of stream iteration")
            value = event.value
            found = value[field] if isinstance(value, Mapping) else getattr(value, field)
            return _ms(found, f"field {field!r}", point=True)

        if not isinstance(field, str):
            raise TypeError("relative_to_field takes a field name (str)")
        return self.clone(field_time)

    def relative_to(self, ts: RelativeArg) -> WindowWrapper:
        if ts is None:
            return self.clone(None)
        if callable(ts):
            fun = ts
            return self.clone(lambda event: _ms(fun(event), "relative_to()'s result", point=True))
        fixed = _ms(ts, "relative_to", point=True)
        return self.clone(lambda event: fixed)

    def get_timestamp(self, event: Event | None = None) -> int:
        """The time (epoch ms) that writes and ``value()`` use for ``event`` (default: the
        current event)."""
        event = event or current_event()
        if self._relative is not None:
            return self._relative(event)
        return _event_time(event)

    def now_ms(self, event: Event | None = None) -> int:
        """"Now" as Faust reads it: in an event, the stream time (newest event time) of the
        event's table partition; elsewhere (or before any write) the wall clock."""
        event = event or current_event()
        if event is not None and event.message is not None:
            part = self.table._store.partitions.get(event.message.partition)
            if part is not None and part.stream_time is not None:
                return part.stream_time
        return int(time.time() * 1000)

    # -- the mapping ---------------------------------------------------------------
    def __getitem__(self, key: Any) -> WindowSet:
        return WindowSet(key, self.table, self, current_event())

    def __setitem__(self, key: Any, value: Any) -> None:
        if isinstance(value, WindowSet):
            return  # `wrapper[k] += 1` assigns the updated window set back: already applied
        self.table._assign_windows(key, value, self.get_timestamp())

    def __delitem__(self, key: Any) -> None:
        self.table._del_windowed(key, self.get_timestamp())

    def __contains__(self, key: Any) -> bool:
        data = self.table._key_bytes(key)
        start = self.table._starts(self.get_timestamp())[-1]
        return self.table._lookup(data, WINDOWED_KEYS.start_bound(start) + data) is not ABSENT

    def keys(self) -> list[Any]:
        """The keys that have at least one (unexpired) window, in key order."""
        seen: dict[bytes, Any] = {}
        for store_key, _ in self.table._rows():
            seen.setdefault(store_key[8:], None)
        return [_hashable(orjson.loads(data)) for data in sorted(seen)]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def items(self, event: Event | None = None) -> list[tuple[Any, Any]]:
        """``(key, value)`` at the wrapper's time; keys without that window are left out
        unless the table has a default."""
        ts = self.get_timestamp(event)
        out = []
        for key in self.keys():
            set_ = WindowSet(key, self.table, self, event)
            try:
                out.append((key, set_._at(ts)))
            except KeyError:
                pass
        return out

    def values(self, event: Event | None = None) -> list[Any]:
        return [value for _, value in self.items(event)]


class TableManager(Mapping[str, _Collection]):
    """The app's tables (Faust's ``app.tables``): declared ones by name, and while the app
    runs, their partitions, recovery and commits (through a :class:`StateManager`)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._tables: dict[str, _Collection] = {}
        self.state: StateManager | None = None
        self.error: BaseException | None = None
        # While a commit is between taking the changes and flushing them into the stores,
        # writes are remembered here and marked dirty again afterwards: the flush clears
        # every dirty mark, including those of writes it did not carry.
        self._in_commit: dict[tuple[int, bytes], tuple[TablePartition, bytes, Any]] | None = None
        self._advanced: dict[int, TablePartition] = {}

    def __getitem__(self, name: str) -> _Collection:
        return self._tables[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tables)

    def __len__(self) -> int:
        return len(self._tables)

    def add(self, table: _Collection) -> None:
        if table.name in self._tables:
            raise ValueError(f"table {table.name!r} is already defined; hint: table names are unique in an app")
        if self.app.started:
            raise RuntimeError(f"table {table.name!r} declared after app {self.app.name!r} started")
        self._tables[table.name] = table

    def not_open(self, table: _Collection, partition: int | None) -> str:
        where = "is not open" if partition is None else f"partition {partition} is not open in this app"
        why = f" (opening it failed: {self.error})" if self.error is not None else ""
        hint = ("hint: use tables while the app runs: in agents, tasks and timers" if self.state is None
                else "hint: a key outside an event goes to the partition its JSON key hashes to; "
                     "this app holds the partitions of the topics it was assigned")
        return f"table {table.name!r} {where}{why}; {hint}"

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        """Create the changelog topics and the state manager (no partition open yet)."""
        self.state, self.error, self._in_commit = None, None, None
        if not self._tables:
            return
        from dataflow.runtime.runner import state_dir_for  # runner imports the worker: only when needed

        transport = self.app.transport
        if not hasattr(transport, "read_partition"):
            # Recovery reads a changelog partition outside the consumer group; better to
            # refuse at start than to run with tables that would not survive a restart.
            raise RuntimeError(f"tables cannot be recovered on {transport.url}: its transport cannot read a "
                               "changelog partition back; hint: use memory:// or the embedded local log")
        data_dir = state_dir_for(transport, str(self.app.data_dir))
        tables = list(self._tables.values())
        for table in tables:
            table._store.partitions.clear()
            table._store.source_offsets.clear()
        existing = await transport.describe_topics([t.changelog_topic for t in tables])
        specs = [TopicSpec(t.changelog_topic, t.partitions, compacted=True) for t in tables
                 if t.changelog_topic not in existing]
        if specs:
            await transport.create_topics(specs)
        for table in tables:
            count = existing.get(table.changelog_topic, table.partitions)
            if count != table.partitions:
                raise ValueError(f"table {table.name!r} has {table.partitions} partitions but its changelog "
                                 f"{table.changelog_topic!r} has {count}; hint: keep the partition count "
                                 "(partitions=), or rename the table")
        self.state = StateManager(None, transport, "memory" if data_dir is None else "leveldb", data_dir,
                                  {t.name: t._store for t in tables})

    def check(self) -> None:
        """Raise what went wrong opening partitions (a transport logs and swallows
        exceptions of assignment callbacks)."""
        if self.error is not None:
            raise self.error

    def _wanted(self, assigned: set[TP]) -> list[tuple[str, int]]:
        """The table partitions that go with an assignment: the same partition numbers;
        those beyond every topic's count go with partition 0 of the first topic."""
        counts = {name: self._partitions_of(name) for name in self.app._consumer_topics}
        numbers = {tp.partition for tp in assigned}
        widest = max(counts.values(), default=0)
        anchor = TP(min(counts), 0) if counts else None
        pairs = []
        for table in self._tables.values():
            for p in range(table.partitions):
                if p in numbers or (p >= widest and anchor in assigned):
                    pairs.append((table.name, p))
        return pairs

    def _partitions_of(self, topic: str) -> int:
        return max((t.partitions or 0 for t in self.app._topics.get(topic, [])), default=0)

    async def open(self, pairs: Iterable[tuple[str, int]]) -> None:
        if self.state is None:
            return
        before = self.state.restored
        try:
            await self.state.open(pairs, self._no_committed)
        except BaseException as exc:
            self.error = exc
            raise
        self.app.monitor.restored_records += self.state.restored - before

    @staticmethod
    async def _no_committed(tp: TP) -> int | None:
        return None  # only tables read from a topic ask for a committed offset

    async def open_all(self) -> None:
        await self.open([(t.name, p) for t in self._tables.values() for p in range(t.partitions)])

    async def assigned(self, tps: set[TP], consumer: Consumer) -> None:
        """Open and recover the table partitions that come with newly assigned partitions."""
        if self.state is not None:
            await self.open(self._wanted(consumer.assignment() | tps))

    async def revoked(self, tps: set[TP], consumer: Consumer) -> None:
        """Commit and close the table partitions that leave with revoked partitions."""
        if self.state is None:
            return
        keep = set(self._wanted(consumer.assignment() - tps))
        leaving = [(t.name, p) for t in self._tables.values() for p in sorted(t._store.partitions)
                   if (t.name, p) not in keep]
        await self._close(leaving)

    async def close(self) -> None:
        """Commit what is left and close every partition (the app is stopping)."""
        if self.state is not None:
            await self._close([(t.name, p) for t in self._tables.values() for p in sorted(t._store.partitions)])

    async def _close(self, pairs: list[tuple[str, int]]) -> None:
        assert self.state is not None
        async with self.app._commit_lock:  # no commit may take a partition's changes while it closes
            for name, p in pairs:
                part = self._tables[name]._store.partitions.get(p)
                while part is not None and (part.dirty or part.stream_time_changed):
                    await self.commit(None, {})
                # Nothing awaits between this check and the one close_partitions makes.
                await self.state.close_partitions([(name, p)])

    async def release(self) -> None:
        """Close every open store without committing (after a failed start or stop), so a
        later start in this process can take the LevelDB locks again."""
        loop = asyncio.get_running_loop()
        for table in self._tables.values():
            parts, table._store.partitions = table._store.partitions, {}
            for part in parts.values():
                await loop.run_in_executor(None, part.store.close)
        self.state = None

    # -- commits -------------------------------------------------------------------
    def dirty(self) -> bool:
        return self.state is not None and self.state.dirty()

    def note_write(self, part: TablePartition, key: bytes, value: Any) -> None:
        if self._in_commit is not None:
            self._in_commit[(id(part), key)] = (part, key, value)

    def note_advance(self, part: TablePartition) -> None:
        if self._in_commit is not None:
            self._advanced[id(part)] = part

    async def commit(self, consumer: Consumer | None, offsets: Mapping[TP, int]) -> None:
        """Write the tables' changelog, commit ``offsets``, then flush the stores.

        The changelog is produced and flushed before the offsets are committed (on the
        embedded local log both go in one atomic write), so committed offsets never run
        ahead of the state they produced.
        """
        state = self.state
        if state is None or not state.dirty():
            if offsets and consumer is not None:
                await consumer.commit(offsets)
            return
        for table in self._tables.values():
            if isinstance(table, Table):
                table._expire()
        self._in_commit = {}
        try:
            records = state.changelog()
            transport, results = self.app.transport, []
            if records and hasattr(transport, "transaction"):
                async with transport.transaction() as txn:
                    for record in records:
                        txn.send(record)
                    if offsets and consumer is not None:
                        txn.commit_offsets(consumer.group_id, offsets)
                results = txn.results
            else:
                if records:
                    producer = self.app._producer
                    assert producer is not None
                    results = await producer.send_batch(records)
                    await producer.flush()
                if offsets and consumer is not None:
                    await consumer.commit(offsets)
            self.app.monitor.changelog_records += len(records)
            await state.flush(results)
        finally:
            written, advanced, self._in_commit, self._advanced = self._in_commit, self._advanced, None, {}
            for part, key, value in written.values():
                part.put(key, value)
            for part in advanced.values():
                # The changelog may hold an older stream time than the store now does.
                part._stream_time_changed = True
