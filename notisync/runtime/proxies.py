"""The client's address behind a reverse proxy (``--trusted-proxies``).

``X-Forwarded-For`` and ``X-Real-IP`` are only believed when the TCP peer is
one of the trusted proxies: anyone else could send them to dodge the
per-address limits (login tries) or to blame another address. Tornado's own
``xheaders`` trusts them from every peer, so the node uses this server
instead: it rewrites ``request.remote_ip`` (and the protocol from
``X-Forwarded-Proto``) per request, before any handler runs, and restores
the peer's values afterwards (a keep-alive connection carries many requests).
"""
from __future__ import annotations

import ipaddress
from typing import Awaitable, Iterable

from tornado import httputil, iostream
from tornado.httpserver import HTTPServer

from notisync.runtime.httpserver import GuardedHTTPServer

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    def __init__(self, entries: Iterable[str]) -> None:
        entries = list(entries)
        self.any_peer = "*" in entries
        self.networks: list[Network] = [ipaddress.ip_network(e, strict=False) for e in entries if e != "*"]

    def __bool__(self) -> bool:
        return self.any_peer or bool(self.networks)

    def trusts(self, address: str) -> bool:
        ip = _ip(address)
        if ip is None:
            return False
        if self.any_peer:
            return True
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:10.0.0.1 on a dual-stack socket is 10.0.0.1
        return any(ip in net for net in self.networks)

    def client_address(self, peer: str, headers: httputil.HTTPHeaders) -> str:
        """The first address, walking X-Forwarded-For from the right, that is not a trusted proxy.

        Each trusted hop appended the address it saw, so everything right of
        the first untrusted one is believable and everything left of it is
        not. Without X-Forwarded-For, X-Real-IP (one hop) is used.
        """
        if not self.trusts(peer):
            return peer
        chain = [c.strip() for c in ",".join(headers.get_list("X-Forwarded-For")).split(",") if c.strip()]
        if not chain:
            real = headers.get("X-Real-IP", "").strip()
            return real if _ip(real) is not None else peer
        client = peer
        for candidate in reversed(chain):
            if _ip(candidate) is None:
                break  # garbage from further out: keep the last believable hop
            client = candidate
            if not self.trusts(candidate):
                break
        return client


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class ProxyAwareHTTPServer(GuardedHTTPServer):
    """The node's server (timeouts, a cap per address) whose requests carry
    the client's address as the trusted proxies report it."""

    trusted: TrustedProxies = TrustedProxies(())

    def _admit(self, stream: iostream.IOStream, address: tuple) -> bool:
        # Every connection through a proxy comes from it: the proxy caps per client.
        if isinstance(address, tuple) and address and self.trusted.trusts(str(address[0])):
            return True
        return super()._admit(stream, address)

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        delegate = super().start_request(server_conn, request_conn)
        if not self.trusted:
            return delegate
        return _ClientAddress(delegate, request_conn, self.trusted)


def make_http_server(trusted_proxies: Iterable[str], *args: object, **kwargs: object) -> HTTPServer:
    server = ProxyAwareHTTPServer(*args, **kwargs)
    server.trusted = TrustedProxies(trusted_proxies)
    return server


class _ClientAddress(httputil.HTTPMessageDelegate):
    def __init__(self, delegate: httputil.HTTPMessageDelegate, request_conn: httputil.HTTPConnection,
                 trusted: TrustedProxies) -> None:
        self.delegate = delegate
        self.context = getattr(request_conn, "context", None)
        self.trusted = trusted
        self.saved: tuple[str, str] | None = None

    def headers_received(self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
                         headers: httputil.HTTPHeaders) -> Awaitable[None] | None:
        context = self.context
        if context is not None and hasattr(context, "remote_ip"):
            peer, protocol = context.remote_ip, context.protocol
            self.saved = (peer, protocol)
            context.remote_ip = self.trusted.client_address(peer, headers)
            if self.trusted.trusts(peer):
                forwarded = headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
                if forwarded in ("http", "https"):
                    context.protocol = forwarded
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        self.delegate.finish()
        self._restore()

    def on_connection_close(self) -> None:
        self.delegate.on_connection_close()
        self._restore()

    def _restore(self) -> None:
        if self.saved is not None and self.context is not None:
            self.context.remote_ip, self.context.protocol = self.saved
            self.saved = None
