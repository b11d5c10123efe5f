"""The HTTP server, with the timeouts and the per-address connection cap of SPEC "Limits".

Tornado's own server has one timer for "waiting for a request's headers",
covering both the idle time between keep-alive requests and the headers
themselves, and by default it is an hour. Here a connection's first request
gets ``--http-timeout`` seconds to send its headers (a slowloris client that
dribbles a header line every few seconds is dropped), later requests on a
kept-alive connection the idle allowance, and every body ``--http-timeout``.

The cap counts TCP connections per peer address, WebSockets included (an
upgraded socket keeps its stream), and answers one more with 429 before
closing it. Behind a proxy every peer is the proxy, so the cap is then off:
the proxy enforces its own (``deploy/`` has nginx's ``limit_conn``).
"""
from __future__ import annotations

import copy
import logging
import time
import weakref
from typing import Any

from tornado import httputil, iostream
from tornado.http1connection import HTTP1ServerConnection
from tornado.httpserver import HTTPServer, _HTTPRequestContext

log = logging.getLogger(__name__)

IDLE_SECONDS = 60.0  # between requests on a kept-alive connection
WARN_EVERY = 10.0  # seconds between log lines about refused connections
_REFUSED = (b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s")
_REFUSED_BODY = (b'{"error": {"code": "too_many_connections", '
                 b'"message": "too many open connections from this address"}}')


class GuardedHTTPServer(HTTPServer):
    # Tornado's servers are Configurable: initialize() is their constructor.
    def initialize(self, *args: Any, http_timeout: float = 0, max_per_address: int = 0, **kwargs: Any) -> None:
        timeout = http_timeout or None  # 0: Tornado's defaults (an hour for headers, no body limit)
        super().initialize(*args, idle_connection_timeout=timeout, body_timeout=timeout, **kwargs)
        self._header_timeout = timeout
        self._idle = IDLE_SECONDS if timeout else None
        self._max_per_address = max_per_address
        # Peer address -> its open streams. Weak: a stream that is closed and
        # collected leaves by itself; one closed but not yet collected is
        # skipped when counting (``closed()``).
        self._by_address: dict[str, weakref.WeakSet[iostream.IOStream]] = {}
        self._warned = -WARN_EVERY

    def handle_stream(self, stream: iostream.IOStream, address: tuple) -> None:
        if self._max_per_address and not self._admit(stream, address):
            return
        context = _HTTPRequestContext(stream, address, self.protocol, self.trusted_downstream)
        # Parameters of its own, so its header timeout can move from the
        # first request's to the idle allowance (start_request).
        params = copy.copy(self.conn_params)
        params.header_timeout = self._header_timeout or 3600
        conn = HTTP1ServerConnection(stream, params, context)
        self._connections.add(conn)
        conn.start_serving(self)

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        assert isinstance(server_conn, HTTP1ServerConnection)
        if getattr(server_conn, "_ns_served", False):
            if self._idle is not None:
                server_conn.params.header_timeout = self._idle
        else:
            setattr(server_conn, "_ns_served", True)
        return super().start_request(server_conn, request_conn)

    def _admit(self, stream: iostream.IOStream, address: tuple) -> bool:
        peer = str(address[0]) if isinstance(address, tuple) and address else ""
        streams = self._by_address.get(peer)
        if streams is None:
            if len(self._by_address) > 10_000:  # forget addresses with nothing open
                self._by_address = {a: s for a, s in self._by_address.items() if len(s)}
            streams = self._by_address[peer] = weakref.WeakSet()
        open_now = sum(1 for s in list(streams) if not s.closed())
        if open_now >= self._max_per_address:
            now = time.monotonic()
            if now - self._warned > WARN_EVERY:  # a flood must not flood the log too
                self._warned = now
                log.warning("refusing connections from %s: %d open (--max-connections-per-address)", peer, open_now)
            stream.write(_REFUSED % (len(_REFUSED_BODY), _REFUSED_BODY)).add_done_callback(
                lambda f: (f.cancelled() or f.exception(), stream.close()))
            return False
        streams.add(stream)
        return True
