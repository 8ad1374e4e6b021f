"""Public hosts: which tunnel a Host header names, and the URL a tunnel is given.

<name>.<domain>[:port]       the tunnel `name`
<domain>, tunnel.<domain>,   the gateway itself (/connect, /healthz)
an IP address, anything else
"""

from __future__ import annotations


class HostRouter:
    def __init__(self, domain: str, http_port: int | None, https_port: int | None = None) -> None:
        self.domain = domain
        self._suffix = b"." + domain.encode()
        self._gateway_hosts = {domain.encode(), b"tunnel" + self._suffix}
        self._http_port = http_port
        self.https_port = https_port

    def __repr__(self) -> str:
        return f"<HostRouter *.{self.domain} http:{self._http_port} https:{self.https_port}>"

    def tunnel_name(self, host: bytes) -> str | None:
        """The tunnel a Host header (lower-cased) addresses, or None for the gateway itself."""
        if host.startswith(b"["):  # IPv6 literal
            return None
        host = host.rsplit(b":", 1)[0] if b":" in host else host
        if host in self._gateway_hosts or not host.endswith(self._suffix):
            return None
        return host[: -len(self._suffix)].decode("ascii", "replace")

    def public_url(self, name: str) -> str:
        """The URL a tunnel is given: https when the gateway has an HTTPS listener."""
        if self.https_port is not None:
            return self.https_url(f"{name}.{self.domain}")
        port = self._http_port
        shown = "" if port is None or port == 80 else f":{port}"
        return f"http://{name}.{self.domain}{shown}"

    def tls_url(self, name: str) -> str:
        """A TLS-passthrough tunnel's address: its name on the HTTPS listener's port."""
        return f"tls://{name}.{self.domain}:{self.https_port or 443}"

    def tcp_url(self, port: int) -> str:
        return f"tcp://{self.domain}:{port}"

    def https_url(self, host: str, target: str = "") -> str:
        """`https://host[:port]target` (host without its port) for the HTTPS listener."""
        port = self.https_port
        shown = "" if port is None or port == 443 else f":{port}"
        return f"https://{host}{shown}{target}"
