"""client/agent.py: what a reconnecting client asks for again."""

from __future__ import annotations

import io

from tunnelgate.client.agent import Agent
from tunnelgate.client.output import make_output
from tunnelgate.config import ClientConfig, TunnelSpec
from tunnelgate.proto.messages import Register, Registered

WEB = TunnelSpec("web", "http", "127.0.0.1", 3000)
DB = TunnelSpec("db", "tcp", "127.0.0.1", 5432)
FIXED = TunnelSpec("fixed", "tcp", "127.0.0.1", 5433, remote_port=20002)
SECURE = TunnelSpec("secure", "tls", "127.0.0.1", 8443, subdomain="secure", proxy_protocol="v2")


def make_agent(*tunnels: TunnelSpec) -> Agent:
    output = make_output("json", io.StringIO(), io.StringIO())
    return Agent(ClientConfig(tunnels=tunnels), output)


def test_the_first_registration_asks_for_what_the_config_says() -> None:
    agent = make_agent(WEB, DB, FIXED, SECURE)
    messages = [agent._register_message(tid, spec) for tid, spec in agent.specs.items()]
    cid = agent.client_id
    assert messages == [
        Register(1, "http", name=None, port=None, client_id=cid),
        Register(2, "tcp", name=None, port=None, client_id=cid),
        Register(3, "tcp", name=None, port=20002, client_id=cid),
        Register(4, "tls", name="secure", port=None, client_id=cid),
    ]


def test_a_reconnect_asks_for_the_name_and_port_it_was_given() -> None:
    agent = make_agent(WEB, DB, SECURE)
    agent.on_registered(Registered(1, "http://k3j2.localhost:8080", name="k3j2"))
    agent.on_registered(Registered(2, "tcp://localhost:20001", port=20001))
    agent.on_registered(Registered(3, "tls://secure.localhost:8443", name="secure"))
    again = [agent._register_message(tid, spec) for tid, spec in agent.specs.items()]
    assert [(m.protocol, m.name, m.port) for m in again] == [
        ("http", "k3j2", None),
        ("tcp", None, 20001),
        ("tls", "secure", None),
    ]


def test_a_port_on_a_name_tunnel_is_not_asked_for() -> None:
    agent = make_agent(WEB)
    agent.on_registered(Registered(1, "http://a.localhost:8080", name="a", port=8080))
    assert agent._register_message(1, WEB).port is None
