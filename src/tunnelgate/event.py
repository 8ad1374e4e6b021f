"""The base of every sans-IO event (proto/, http1/): slotted, comparable by value."""

from __future__ import annotations

from typing import ClassVar


class Event:
    __slots__ = ()
    # The compared and shown fields (compiled classes keep no __slots__ to read).
    fields: ClassVar[tuple[str, ...]] = ()

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={getattr(self, k)!r}" for k in type(self).fields)
        return f"{type(self).__name__}({shown})"

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in type(self).fields)

    __hash__ = None  # type: ignore[assignment]
