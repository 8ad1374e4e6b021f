"""Names the controller reserved for its accounts: no other account may take them (SPEC).

Each allow from the controller lists the names reserved for its account; the latest
answer for an account replaces what it said before, and a name listed for a new account
moves to it. The check applies to every registration, whatever authenticated it: a
static token's or a JWT's identity is another account than every controller account.

Node-local and learnt from answers: a name is known to be reserved once its account has
been allowed here (since start-up, and while it is among the MAX_RESERVED_NAMES named
last); the controller itself should refuse other accounts its reserved names too.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from tunnelgate import limits
from tunnelgate.proto.codes import RejectReason

from .auth import Identity, Refusal, Wanted


class Reservations:
    """auth.RegistrationCheck of the identities local methods accept."""

    def __init__(self, max_names: int = limits.MAX_RESERVED_NAMES) -> None:
        self._max_names = max_names
        self._owners: OrderedDict[str, str] = OrderedDict()  # name -> principal
        self._names: dict[str, set[str]] = {}  # principal -> its names

    def __len__(self) -> int:
        return len(self._owners)

    def owner(self, name: str) -> str | None:
        """The principal `name` is reserved for, if any."""
        return self._owners.get(name)

    def update(self, principal: str, names: Iterable[str]) -> None:
        """The controller's latest word on `principal`'s names."""
        new = set(names)
        for name in self._names.pop(principal, set()) - new:
            del self._owners[name]
        for name in new:
            previous = self._owners.get(name)
            if previous is not None and previous != principal:
                self._drop(previous, name)
            self._owners[name] = principal
            self._owners.move_to_end(name)
        if new:
            self._names[principal] = new
        while len(self._owners) > self._max_names:
            name, owner = self._owners.popitem(last=False)
            self._drop(owner, name, owned=False)

    def _drop(self, principal: str, name: str, *, owned: bool = True) -> None:
        if owned:
            self._owners.pop(name, None)
        names = self._names.get(principal)
        if names is not None:
            names.discard(name)
            if not names:
                del self._names[principal]

    def refusal(self, identity: Identity, name: str | None) -> Refusal | None:
        if name is None or not self.reserved_for_other(name, identity):
            return None
        return Refusal(RejectReason.NAME_RESERVED, f"{name!r} is reserved for another account")

    # --- auth.RegistrationCheck ---------------------------------------------------------
    async def authorize(self, identity: Identity, wanted: Wanted) -> Identity | Refusal:
        return self.refusal(identity, wanted.name) or identity

    def reserved_for_other(self, name: str, identity: Identity) -> bool:
        owner = self._owners.get(name)
        return owner is not None and owner != identity.principal
