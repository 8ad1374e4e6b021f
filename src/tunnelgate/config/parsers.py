"""Value parsers: a raw value (a str from the command line or the environment, or a TOML
value) in, a typed value out, or `Invalid` saying what was expected.

A parser never names the key: the loader (sources.py) adds the key as the user spelled it.
Secrets are never echoed in a message.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from typing import Literal
from urllib.parse import urlsplit

from tunnelgate.proto.names import normalize_name

Address = tuple[str, int]
LogFormat = Literal["text", "json"]
Parser = Callable[[object], object]


class Invalid(Exception):
    """A value is wrong; the loader adds which key (and from where) to the message."""


def string(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise Invalid(f"must be a non-empty string, got {value!r}")
    return value


def secret(value: object) -> str:
    # Sent in an HTTP header: visible ASCII only. The value is never echoed.
    if not isinstance(value, str) or not value or not re.fullmatch(r"[\x21-\x7e]+", value):
        raise Invalid("must be non-empty printable ASCII without spaces")
    return value


def tokens(value: object) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else [value]
    return tuple(dict.fromkeys(secret(item) for item in items))


def boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
        return False
    raise Invalid(f"must be true or false, got {value!r}")


def integer(value: object, minimum: int, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip()):
        number = int(value)
    else:
        raise Invalid(f"must be {what}, got {value!r}")
    if number < minimum:
        raise Invalid(f"must be {what}, got {value!r}")
    return number


def count(value: object) -> int:
    return integer(value, 1, "an integer >= 1")


def port(value: object) -> int:
    number = integer(value, 1, "a port number 1-65535")
    if number > 65535:
        raise Invalid(f"must be a port number 1-65535, got {value!r}")
    return number


def seconds(positive: bool) -> Callable[[object], float]:
    """Float seconds, > 0 (`positive`) or >= 0; never nan or inf."""
    what = "a number of seconds > 0" if positive else "a number of seconds >= 0"

    def parse(value: object) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                raise Invalid(f"must be {what}, got {value!r}") from None
        else:
            raise Invalid(f"must be {what}, got {value!r}")
        if not math.isfinite(number) or number < 0 or (positive and number == 0):
            raise Invalid(f"must be {what}, got {value!r}")
        return number

    return parse


def workers(value: object) -> int | Literal["auto"]:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    return integer(value, 1, "an integer >= 1 or auto")


# --- hosts and addresses -----------------------------------------------------------------


def hostname(value: str) -> str:
    """A lower-cased DNS host name (labels as tunnel names), or Invalid."""
    name = value.lower().removesuffix(".")
    labels = name.split(".")
    if len(name) > 253 or any(normalize_name(label) is None for label in labels):
        raise Invalid(f"must be a valid host name, got {value!r}")
    return name


def host(value: object) -> str:
    """An IP address literal or a host name."""
    text = string(value)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return hostname(text)


def domain(value: object) -> str:
    text = string(value)
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return hostname(text)
    raise Invalid(f"must be a host name (tunnels are <name>.DOMAIN), not an address: {text!r}")


def split_host_port(text: str) -> tuple[str, str]:
    """'HOST:PORT', '[V6]:PORT', ':PORT' or 'PORT' -> (host or '', port text)."""
    if text.startswith("["):
        host_text, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise Invalid(f"must be [IPV6]:PORT, got {text!r}")
        return host_text, port_text
    if text.count(":") > 1:
        raise Invalid(f"IPv6 addresses need brackets, as in [::1]:8080, got {text!r}")
    host_text, _, port_text = text.rpartition(":")
    return host_text, port_text


def format_address(addr: Address) -> str:
    """('::1', 80) -> '[::1]:80'."""
    host_text = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
    return f"{host_text}:{addr[1]}"


def listen(value: object) -> Address | None:
    """A listener: 'HOST:PORT', ':PORT' (all interfaces), 'PORT' (loopback) or 'off'."""
    if isinstance(value, int) and not isinstance(value, bool):
        return ("127.0.0.1", port(value))
    text = string(value)
    if text.lower() == "off":
        return None
    host_text, port_text = split_host_port(text)
    if ":" not in text:
        host_text = "127.0.0.1"
    elif not host_text:
        host_text = "0.0.0.0"
    return (host(host_text), port(port_text))


def address(value: object) -> Address:
    """An address others dial: 'HOST:PORT' with both parts."""
    text = string(value)
    host_text, port_text = split_host_port(text)
    if not host_text:
        raise Invalid(f"must be HOST:PORT, got {text!r}")
    return (host(host_text), port(port_text))


def port_range(value: object) -> tuple[int, int] | None:
    if isinstance(value, list) and len(value) == 2:
        low, high = port(value[0]), port(value[1])
    else:
        text = string(value)
        if text.lower() == "off":
            return None
        low_text, _, high_text = text.partition("-")
        low = port(low_text)
        high = port(high_text) if high_text else low
    if low > high:
        raise Invalid(f"must be LO-HI with LO <= HI, got {value!r}")
    return (low, high)


# --- names, URLs, formats ----------------------------------------------------------------


def names(value: object) -> tuple[str, ...]:
    """Tunnel names, comma-separated or a TOML list; folded to lower case, deduplicated."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise Invalid(f"must be comma-separated names, got {value!r}")
    found: list[str] = []
    for item in items:
        item = item.strip() if isinstance(item, str) else item
        if item == "":
            continue
        name = normalize_name(item) if isinstance(item, str) else None
        if name is None:
            raise Invalid(f"{item!r} is not a valid name (1-63 of a-z 0-9 -)")
        found.append(name)
    return tuple(dict.fromkeys(found))


def url(*schemes: str) -> Callable[[object], str]:
    """A URL with one of `schemes` and a host; returned as given."""

    def parse(value: object) -> str:
        text = string(value)
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 -- raises ValueError on a bad port
        except ValueError:
            raise Invalid(f"must be a {'/'.join(schemes)} URL, got {text!r}") from None
        if parts.scheme.lower() not in schemes or not parts.hostname:
            raise Invalid(f"must be a {' or '.join(s + '://' for s in schemes)} URL, got {text!r}")
        return text

    return parse


def email(value: object) -> str:
    text = string(value)
    local, _, rest = text.rpartition("@")
    try:
        if not local or " " in local:
            raise Invalid
        hostname(rest)
    except Invalid:
        raise Invalid(f"must be an e-mail address, got {text!r}") from None
    return text


def log_format(value: object) -> LogFormat:
    if value == "text":
        return "text"
    if value == "json":
        return "json"
    raise Invalid(f"must be text or json, got {value!r}")
