"""Build hook: compile the per-request hot path with mypyc.

The modules below are plain, fully typed Python; mypyc turns them into C extensions,
which took the gateway from about 49 to 25 us of CPU per request and the client from 35
to 18 (docs/performance.md). The same sources run interpreted when
TUNNELGATE_PURE_PYTHON=1 is set at install time, or anywhere mypyc is unavailable.
Classes that subclass picows' Cython listener, and dataclasses whose annotations are only
known to the type checker, stay interpreted (mypyc cannot compile those correctly).
"""

import os

from setuptools import setup

COMPILED = [
    "src/tunnelgate/event.py",
    "src/tunnelgate/proto/codes.py",
    "src/tunnelgate/proto/events.py",
    "src/tunnelgate/proto/flow.py",
    "src/tunnelgate/proto/frames.py",
    "src/tunnelgate/proto/messages.py",
    "src/tunnelgate/proto/mux.py",
    "src/tunnelgate/http1/_framing.py",
    "src/tunnelgate/http1/events.py",
    "src/tunnelgate/http1/request.py",
    "src/tunnelgate/http1/response.py",
    "src/tunnelgate/http1/serialize.py",
    "src/tunnelgate/transport/deadlines.py",
    "src/tunnelgate/transport/tunnel.py",
    "src/tunnelgate/gateway/edge.py",
    "src/tunnelgate/gateway/routes.py",
    "src/tunnelgate/gateway/caps.py",
    "src/tunnelgate/gateway/exchange.py",
    "src/tunnelgate/client/upstream.py",
    "src/tunnelgate/client/output.py",
]

ext_modules = []
if os.environ.get("TUNNELGATE_PURE_PYTHON") != "1":
    from mypyc.build import mypycify

    ext_modules = mypycify(COMPILED, group_name="tunnelgate_speedups")

setup(ext_modules=ext_modules)
