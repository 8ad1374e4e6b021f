"""What a reload may apply: compare an old and a new gateway config by the option table's
reload marks (gateway_options.py). A later reload (SIGHUP) loads the new config the usual
way, applies it if `restart_needed` is empty, and otherwise keeps the old one and says which
options need a restart.
"""

from __future__ import annotations

from .gateway import GatewayConfig
from .gateway_options import GATEWAY_OPTIONS
from .options import Option

# Options that name a file whose contents the config holds too: a rewritten file is a change.
_CONTENTS = {"tokens_file": "file_token_digests"}


def changed_options(old: GatewayConfig, new: GatewayConfig) -> tuple[Option, ...]:
    """The implemented options whose value differs between `old` and `new`, in table order."""
    return tuple(opt for opt in GATEWAY_OPTIONS if opt.implemented and _differs(opt, old, new))


def _differs(opt: Option, old: GatewayConfig, new: GatewayConfig) -> bool:
    fields = (opt.field, _CONTENTS[opt.field]) if opt.field in _CONTENTS else (opt.field,)
    return any(getattr(old, name) != getattr(new, name) for name in fields)


def restart_needed(old: GatewayConfig, new: GatewayConfig) -> tuple[str, ...]:
    """The changed options only a restart can apply, as flags ('--http', '--domain')."""
    return tuple(opt.flag for opt in changed_options(old, new) if not opt.reload)
