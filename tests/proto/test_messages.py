"""Control messages (JSON on stream 0) and the OPEN metadata."""

from __future__ import annotations

import json

import pytest

from tunnelgate.errors import RemoteProtocolError
from tunnelgate.limits import MAX_OPEN_TARGET
from tunnelgate.proto.codes import ErrorCode, RejectReason, StreamKind
from tunnelgate.proto.messages import (
    ControlMessage,
    OpenInfo,
    Register,
    Registered,
    Rejected,
    decode_control,
    encode_control,
)

ROUND_TRIP: list[ControlMessage] = [
    Register(id=1, protocol="http"),
    Register(id=2, protocol="http", name="demo", host_header="localhost:3000"),
    Register(id=3, protocol="tcp", port=20001),
    Register(id=2**40, protocol="tcp"),
    Register(id=6, protocol="tls", name="secure"),
    Registered(id=1, url="http://demo.localhost:8080", name="demo"),
    Registered(id=3, url="tcp://localhost:20001", port=20001),
    Registered(id=6, url="tls://secure.localhost:8443", name="secure"),
    *[Rejected(id=4, reason=reason, message=f"because {reason}") for reason in RejectReason],
    Rejected(id=5, reason=RejectReason.NAME_TAKEN, message='caf\u00e9 \u2603 "quoted"\n'),
]


@pytest.mark.parametrize("message", ROUND_TRIP, ids=repr)
def test_round_trip(message: ControlMessage) -> None:
    wire = encode_control(message)
    assert decode_control(wire) == message
    assert decode_control(memoryview(wire)) == message


@pytest.mark.parametrize(
    ("message", "body"),
    [
        (
            Registered(id=1, url="http://a.localhost", name="a"),
            {"type": "registered", "id": 1, "url": "http://a.localhost", "name": "a", "port": None},
        ),
        (
            Rejected(id=2, reason=RejectReason.NAME_RESERVED, message="reserved"),
            {"type": "rejected", "id": 2, "reason": "name_reserved", "message": "reserved"},
        ),
    ],
)
def test_wire_form_is_a_flat_json_object(message: ControlMessage, body: dict[str, object]) -> None:
    wire = encode_control(message)
    assert json.loads(wire) == body
    assert b" " not in wire  # compact


def test_register_wire_form() -> None:
    body = json.loads(encode_control(Register(id=7, protocol="http", name="x")))
    assert {"type": "register", "id": 7, "protocol": "http", "name": "x"}.items() <= body.items()
    assert (body["port"], body["host_header"]) == (None, None)


def test_reject_reasons_are_the_closed_list() -> None:
    assert sorted(RejectReason) == sorted([
        "auth_failed", "name_taken", "name_reserved", "name_invalid", "port_taken",
        "port_out_of_range", "protocol_unsupported", "too_many_tunnels", "not_authorized",
        "controller_unavailable", "registry_unavailable", "bad_request", "internal",
    ])  # fmt: skip


def test_unknown_reject_reason_from_a_newer_peer_reads_as_internal() -> None:
    wire = b'{"type":"rejected","id":1,"reason":"quota_exceeded","message":"m"}'
    assert decode_control(wire) == Rejected(1, RejectReason.INTERNAL, "m")


def test_unknown_extra_fields_are_ignored() -> None:
    wire = b'{"type":"registered","id":1,"url":"u","future":[1,2]}'
    assert decode_control(wire) == Registered(id=1, url="u")


def test_absent_optional_fields_read_as_none() -> None:
    assert decode_control(b'{"type":"register","id":1,"protocol":"tcp"}') == Register(1, "tcp")


MALFORMED = [
    pytest.param(b"", id="empty"),
    pytest.param(b"{", id="truncated"),
    pytest.param(b"\xff\xfe{}", id="not-utf8"),
    pytest.param(
        b'{"type":"register","id":1,"protocol":"http","name":"\xff"}', id="bad-utf8-in-string"
    ),
    pytest.param(b"[]", id="array"),
    pytest.param(b'"register"', id="string"),
    pytest.param(b"null", id="null"),
    pytest.param(b"{}", id="no-type"),
    pytest.param(b'{"type":"hello"}', id="unknown-type"),
    pytest.param(b'{"type":7}', id="type-not-string"),
    pytest.param(b'{"type":"register","protocol":"http"}', id="register-no-id"),
    pytest.param(b'{"type":"register","id":"1","protocol":"http"}', id="id-string"),
    pytest.param(b'{"type":"register","id":true,"protocol":"http"}', id="id-bool"),
    pytest.param(b'{"type":"register","id":1.5,"protocol":"http"}', id="id-float"),
    pytest.param(b'{"type":"register","id":null,"protocol":"http"}', id="id-null"),
    pytest.param(b'{"type":"register","id":1}', id="no-protocol"),
    pytest.param(b'{"type":"register","id":1,"protocol":"udp"}', id="protocol-unknown"),
    pytest.param(b'{"type":"register","id":1,"protocol":["http"]}', id="protocol-list"),
    pytest.param(b'{"type":"register","id":1,"protocol":"http","name":5}', id="name-int"),
    pytest.param(b'{"type":"register","id":1,"protocol":"tcp","port":"80"}', id="port-string"),
    pytest.param(b'{"type":"register","id":1,"protocol":"tcp","port":false}', id="port-bool"),
    pytest.param(b'{"type":"register","id":1,"protocol":"http","host_header":{}}', id="host-obj"),
    pytest.param(b'{"type":"registered","id":1}', id="registered-no-url"),
    pytest.param(b'{"type":"registered","id":1,"url":null}', id="registered-url-null"),
    pytest.param(b'{"type":"registered","id":1,"url":"u","name":1}', id="registered-name-int"),
    pytest.param(b'{"type":"registered","id":1,"url":"u","port":"1"}', id="registered-port-str"),
    pytest.param(b'{"type":"rejected","id":1,"reason":"auth_failed"}', id="rejected-no-message"),
    pytest.param(b'{"type":"rejected","id":1,"reason":3,"message":"m"}', id="rejected-reason-int"),
    pytest.param(b'{"type":"rejected","reason":"internal","message":"m"}', id="rejected-no-id"),
    pytest.param(b'{"id":1,"id":' + b"9" * 5000 + b"}", id="huge-int"),
    # Regression: deep nesting raised RecursionError out of the parser.
    pytest.param(b"[" * 100_000, id="deeply-nested"),
    pytest.param(b'{"type":"register","x":' + b"{" * 5000, id="deeply-nested-object"),
]


@pytest.mark.parametrize("payload", MALFORMED)
def test_malformed_control_message_is_a_protocol_error(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_control(payload)
    assert info.value.code == ErrorCode.PROTOCOL_ERROR


# --- OPEN metadata ----------------------------------------------------------------
@pytest.mark.parametrize(
    "info",
    [
        OpenInfo(0, ""),
        OpenInfo(1, "203.0.113.9:51234", StreamKind.HTTP, b"GET", b"/index.html?q=1"),
        OpenInfo(2**32 - 1, "2001:db8::1:443", StreamKind.HTTP, b"HEAD", b"*", "1.0"),
        OpenInfo(5, "h\u00f4te:1", StreamKind.TCP),
        OpenInfo(6, "10.0.0.1:9", StreamKind.TLS),
        OpenInfo(7, "1.2.3.4:5", method=b"OPTIONS", target=b"/\xff\x00"),  # bytes as sent
    ],
    ids=repr,
)
def test_open_info_round_trip(info: OpenInfo) -> None:
    assert OpenInfo.decode(info.encode()) == info


def test_open_info_layout() -> None:
    info = OpenInfo(0x01020304, "1.2.3.4:5", StreamKind.HTTP, b"HEAD", b"/a", "1.0")
    assert info.encode() == (
        b"\x01\x02\x03\x04"  # tunnel id
        b"\x01"  # kind: http
        b"\x01"  # flags: HTTP/1.0
        b"\x09\x04\x00\x02"  # lengths: address, method, target
        b"1.2.3.4:5HEAD/a"
    )


def test_open_info_cuts_long_fields() -> None:
    target = b"/" + b"x" * 5000
    info = OpenInfo(1, "a" * 300, method=b"M" * 300, target=target)
    decoded = OpenInfo.decode(info.encode())
    assert decoded.target == target[:MAX_OPEN_TARGET]
    assert (len(decoded.client_addr), len(decoded.method)) == (255, 255)


def test_open_info_ignores_bytes_past_its_fields() -> None:
    # Room for fields a later v2 peer may append.
    info = OpenInfo(3, "1.2.3.4:5", method=b"GET", target=b"/")
    assert OpenInfo.decode(info.encode() + b"\x00more") == info


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\0\0\0\x01\x01\0\0\0\0", id="short-header"),
        pytest.param(b"\0\0\0\x01\x01\0\x05\0\0\0abc", id="address-past-the-end"),
        pytest.param(b"\0\0\0\x01\x01\0\0\x03\0\x04GET/", id="target-past-the-end"),
        pytest.param(b"\0\0\0\x01\x01\0\x02\0\0\0\xff\xfe", id="address-not-utf8"),
        pytest.param(b"\0\0\0\x01\x00\0\0\0\0\0", id="kind-0"),
        pytest.param(b"\0\0\0\x01\x09\0\0\0\0\0", id="unknown-kind"),
        pytest.param(b"\0\0\0\x011.2.3.4:5", id="v1-layout"),
    ],
)
def test_bad_open_info(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        OpenInfo.decode(payload)
    assert info.value.code == ErrorCode.PROTOCOL_ERROR


def test_code_name_reads_unknown_codes() -> None:
    from tunnelgate.proto.codes import code_name

    assert code_name(0) == "no_error"
    assert code_name(9) == "idle_timeout"
    assert code_name(4242) == "error_4242"
