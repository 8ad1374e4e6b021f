"""The base of the parsers' events: slotted, comparable by value (tests rely on it)."""

from __future__ import annotations


class Event:
    __slots__ = ()

    def __repr__(self) -> str:
        names: tuple[str, ...] = self.__slots__
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in names)
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        names: tuple[str, ...] = self.__slots__
        return all(getattr(self, k) == getattr(other, k) for k in names)

    __hash__ = None  # type: ignore[assignment]
