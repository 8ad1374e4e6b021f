"""Test helpers that ship with tunnelgate, in the spirit of ``trio.testing``.

They are used by tunnelgate's own test suite and are public so that users can test their own
set-ups the same way. Nothing here is imported by the gateway or the client.

- :mod:`tunnelgate.testing.local_app`: a real HTTP/1.1 application server to put behind a
  tunnel (echo, uploads, large and streamed bodies, server-sent events, WebSocket and raw
  upgrades, ``Expect: 100-continue``). It is written from scratch on asyncio and httptools and
  shares no code with the gateway, so it can catch the gateway's mistakes. Run it with
  ``python -m tunnelgate.testing.local_app --port 0``.
- :mod:`tunnelgate.testing.tcp_app`: a raw TCP echo to put behind a TCP or TLS tunnel; it can
  expect a PROXY header (and records the address it names) and speak TLS after it. Run it with
  ``python -m tunnelgate.testing.tcp_app --port 0 [--proxy-protocol v1|v2|any]``.
- :mod:`tunnelgate.testing.proxy_header`: a PROXY protocol (v1, v2) header reader, written apart
  from the client's encoder.
- :mod:`tunnelgate.testing.serving`: stopping a test server with its connections (bounded).
- :mod:`tunnelgate.testing.metrics`: ``/metrics`` read with prometheus_client's parser, one
  string per sample.
- :mod:`tunnelgate.testing.http_client`: a raw-socket HTTP/1.1 client for tests that must
  control every byte (keep-alive, pipelining, chunked bodies, upgrades).
- :mod:`tunnelgate.testing.websocket`: client-side WebSocket frames for the raw client.
- :mod:`tunnelgate.testing.differential`: a raw origin answering scripted bytes, and the same
  raw request sent to it directly and through a tunnel, compared modulo what a proxy must
  change (X-Forwarded-*, hop-by-hop fields, HTTP/1.0 adaptations).
- :mod:`tunnelgate.testing.endpoints`: broken and hostile tunnel endpoints (closing, resetting,
  silent, bad statuses, a 101 and then nothing, rejecting) to test how a client copes with the
  network or an attacker in front of the gateway.
- :mod:`tunnelgate.testing.scripted_gateway`: a gateway stand-in that takes a real client's
  tunnel, accepts its registrations and opens TCP or TLS streams to it when a test says.
- :mod:`tunnelgate.testing.processes`: start the gateway, the client and the local app as real
  processes, wait on their output with deadlines, and always kill them by PID.
- :mod:`tunnelgate.testing.workers`: a gateway with ``--workers N`` (cluster options on free
  ports), and what its log says of each worker (pids, ready, exits).
- :mod:`tunnelgate.testing.fakes`: fakes for component tests in milliseconds: the tunnel
  transport as a stream's handler sees it, a raw pipe's socket, an asyncio transport.
- :mod:`tunnelgate.testing.memory_tunnel`: a real ``TunnelConnection`` on a fake WebSocket,
  facing a sans-IO peer the test drives frame by frame.
- :mod:`tunnelgate.testing.clock`: a fake clock with timers, for the timer wheel.
- :mod:`tunnelgate.testing.controller`: a controller (``--controller``) over real HTTP that
  allows, denies, reserves names, stalls or fails as the test says, and records each request.
- :mod:`tunnelgate.testing.tokens`: JWTs and keys for tests (HS256, RS256, ES256, EdDSA).
- :mod:`tunnelgate.testing.redis_server`: a real ``redis-server`` on a free loopback port,
  without persistence, that a test can kill, restart empty on the same port, or pause.

This package deliberately imports nothing on its own, so that
``python -m tunnelgate.testing.local_app`` starts cleanly.
"""
