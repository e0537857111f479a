"""Reading a TOML table field by field, with errors that name the field.

A :class:`Table` wraps one parsed TOML table and knows its dotted place in the file
(``publishers[0].topics[1]``); its getters check type and range and raise
:class:`~qosinspect.ConfigError` naming the exact field; :meth:`Table.finish` rejects a key
nobody read (a typo), suggesting the closest known key.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import ConfigError

__all__ = ["Table", "kind_of"]


class Table:
    """A TOML table being read: typed getters that know the field's dotted name, and a final
    check that no key was misspelt."""

    def __init__(self, data: Any, where: str, path: str | None) -> None:
        self.where = where
        self.path = path
        if not isinstance(data, Mapping):
            raise self.error(f"must be a table, not {kind_of(data)}")
        self.data: Mapping[str, Any] = data
        self.used: set[str] = set()

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def error(self, message: str, key: str | None = None) -> ConfigError:
        where = self.name(key) if key is not None else (self.where or None)
        return ConfigError(message, field=where, path=self.path)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def string(self, key: str, default: str | None = None, *, choices: tuple[str, ...] = ()
               ) -> str:
        value = self.raw(key)
        if value is None:
            if default is None:
                raise self.error("is required", key)
            return default
        if not isinstance(value, str):
            raise self.error(f"must be a string, not {kind_of(value)}", key)
        if choices and value not in choices:
            raise self.error(f"must be one of {', '.join(choices)}, not {value!r}", key)
        return value

    def integer(self, key: str, default: int | None = None, *, low: int | None = None,
                high: int | None = None) -> int:
        value = self.raw(key)
        if value is None:
            if default is None:
                raise self.error("is required", key)
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"must be an integer, not {kind_of(value)}", key)
        _check_range(self, key, value, low, high)
        return value

    def number(self, key: str, default: float | None = None, *, low: float | None = None,
               high: float | None = None, positive: bool = False) -> float:
        value = self.raw(key)
        if value is None:
            if default is None:
                raise self.error("is required", key)
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(f"must be a number, not {kind_of(value)}", key)
        if not math.isfinite(value):
            raise self.error(f"must be a finite number, not {value}", key)
        if positive and value <= 0:
            raise self.error(f"must be greater than 0, not {value}", key)
        _check_range(self, key, value, low, high)
        return float(value)

    def optional_number(self, key: str, **kw: Any) -> float | None:
        return self.number(key, **kw) if self.data.get(key) is not None else self.raw(key)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(f"must be true or false, not {kind_of(value)}", key)
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.raw(key)
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error("must be a string or a list of strings", key)
        return tuple(value)

    def tables(self, key: str) -> Iterator[Table]:
        value = self.raw(key)
        if value is None:
            return
        if not isinstance(value, list):
            raise self.error(f"must be an array of tables ([[{self.name(key)}]]), "
                             f"not {kind_of(value)}", key)
        for i, item in enumerate(value):
            yield Table(item, f"{self.name(key)}[{i}]", self.path)

    def table(self, key: str) -> Table:
        return Table(self.raw(key) or {}, self.name(key), self.path)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(key, sorted(self.used), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.error(f"unknown key{hint}", key)


def kind_of(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array"}.get(type(value), "a table" if isinstance(value, Mapping)
                                  else type(value).__name__)


def _check_range(t: Table, key: str, value: float, low: float | None, high: float | None
                 ) -> None:
    if low is not None and value < low:
        raise t.error(f"must be at least {low}, not {value}", key)
    if high is not None and value > high:
        raise t.error(f"must be at most {high}, not {value}", key)


