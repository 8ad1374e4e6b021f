"""Wire codes: error codes, what a stream carries, registration rejection reasons."""

from enum import IntEnum, StrEnum


class ErrorCode(IntEnum):
    """Carried by RESET and GOAWAY frames (modelled on HTTP/2's error codes)."""

    NO_ERROR = 0  # clean close: the peer is done
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2
    FLOW_CONTROL_ERROR = 3
    STREAM_CLOSED = 4
    FRAME_SIZE_ERROR = 5
    REFUSED_STREAM = 6  # over the stream cap, or no such tunnel: safe to retry
    CANCEL = 7  # the opener no longer wants the stream
    CONNECT_ERROR = 8  # the local service refused or failed
    IDLE_TIMEOUT = 9
    HEARTBEAT_TIMEOUT = 10
    SHUTDOWN = 11  # the gateway is going away; reconnect (elsewhere)
    KICKED = 12  # an operator closed the tunnel
    # The peer floods us (frames that make work but carry nothing, replies it does not
    # read): as HTTP/2's ENHANCE_YOUR_CALM after CVE-2019-9512..9518.
    ENHANCE_YOUR_CALM = 13
    # RESET only: the local app's response head is over the limit (limits.MAX_HEADER_BYTES);
    # the gateway answers 502 response_head_too_large. A peer that does not know the code
    # takes it as INTERNAL_ERROR (§9), an older gateway answers tunnel_error.
    HEAD_TOO_LARGE = 14


class StreamKind(IntEnum):
    """What a stream carries, from its OPEN metadata (docs/protocol.md §7)."""

    HTTP = 1  # one HTTP/1.1 request and its response (then raw bytes after a 101)
    TCP = 2  # the bytes of one public TCP connection, both ways
    TLS = 3  # TLS passthrough: the bytes of one TLS connection, never decrypted


def code_name(code: int) -> str:
    """A readable name for a wire code, also for codes a newer peer may send."""
    try:
        return ErrorCode(code).name.lower()
    except ValueError:
        return f"error_{code}"


class RejectReason(StrEnum):
    """The closed list of reasons a registration is refused."""

    AUTH_FAILED = "auth_failed"
    NAME_TAKEN = "name_taken"
    NAME_RESERVED = "name_reserved"
    NAME_INVALID = "name_invalid"
    PORT_TAKEN = "port_taken"
    PORT_OUT_OF_RANGE = "port_out_of_range"
    PROTOCOL_UNSUPPORTED = "protocol_unsupported"
    TOO_MANY_TUNNELS = "too_many_tunnels"
    NOT_AUTHORIZED = "not_authorized"
    CONTROLLER_UNAVAILABLE = "controller_unavailable"
    # Cluster mode: the shared registry (Redis) cannot be reached; claims fail closed.
    REGISTRY_UNAVAILABLE = "registry_unavailable"
    BAD_REQUEST = "bad_request"
    INTERNAL = "internal"
