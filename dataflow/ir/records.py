"""`Record`: typed records declared as Python classes, Faust style.

>>> class Withdrawal(Record):
...     account_id: str
...     amount: float
>>> Withdrawal.__dataflow_schema__.describe()
'Withdrawal { account_id: str, amount: float }'
>>> Withdrawal(account_id="a", amount=2.0).to_dict()
{'account_id': 'a', 'amount': 2.0}
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, ClassVar

from .types import Field, RecordType, from_python


class Record:
    """Subclass with annotated fields; each subclass becomes a dataclass with a schema."""

    __dataflow_schema__: ClassVar[RecordType]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(cls)
        hints = typing.get_type_hints(cls)
        fields = tuple(Field(f.name, from_python(hints[f.name])) for f in dataclasses.fields(cls))  # type: ignore[arg-type]
        cls.__dataflow_schema__ = RecordType(cls.__name__, fields)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Record":
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
