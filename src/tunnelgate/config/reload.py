"""What a reload may apply: compare an old and a new gateway config by the option table's
reload marks (gateway_options.py). A later reload (SIGHUP) loads the new config the usual
way, applies it if `restart_needed` is empty, and otherwise keeps the old one and says which
options need a restart.
"""

from __future__ import annotations

from .gateway import GatewayConfig
from .gateway_options import GATEWAY_OPTIONS
from .options import Option


def changed_options(old: GatewayConfig, new: GatewayConfig) -> tuple[Option, ...]:
    """The implemented options whose value differs between `old` and `new`, in table order."""
    return tuple(
        opt
        for opt in GATEWAY_OPTIONS
        if opt.implemented and getattr(old, opt.field) != getattr(new, opt.field)
    )


def restart_needed(old: GatewayConfig, new: GatewayConfig) -> tuple[str, ...]:
    """The changed options only a restart can apply, as flags ('--http', '--domain')."""
    return tuple(opt.flag for opt in changed_options(old, new) if not opt.reload)
