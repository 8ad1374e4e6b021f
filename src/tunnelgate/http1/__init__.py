"""HTTP/1.1 without I/O, for both ends of a tunnel.

The gateway parses public requests strictly (`request.RequestParser`) and re-serializes
their heads for the local app (`request.serialize_head`); both ends watch the app's
responses go by (`response.ResponseParser`) to learn where each one ends, forwarding the
bytes unchanged. llhttp (httptools) does the byte-level validation in C; this package
decides framing itself, so it always knows exactly where heads and messages end, and adds
the checks where llhttp is lenient. Feed bytes, get events: no sockets, no asyncio.
"""
