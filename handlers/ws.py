"""/ws: one socket of one device. Auth, frames in, frames out, back-pressure.

Everything about what a device receives lives in ``notisync/delivery/``;
this handler authenticates, parses client frames, calls the same use cases
as REST, and writes frames with a bound on how far a client may fall behind.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from typing import Any

import tornado.websocket
from tornado.httputil import HTTPHeaders
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError

from handlers.base import ServiceHandler
from handlers.frame_reader import FrameReader
from handlers.outbox import Outbox, write_frames
from notisync import protocol, schemas
from notisync.core.notifications import Dropped
from notisync.delivery.subscriber import Subscriber
from notisync.errors import ApiError, Forbidden, NotFound, Unauthorized, Unavailable, dependency_failure
from notisync.hooks import hooks
from notisync.views import notification_view

log = logging.getLogger(__name__)

# Frames queued or written but not yet in the kernel; past this the client
# is not keeping up, and it recovers from its stream after reconnecting.
MAX_PENDING_FRAMES = 5000
# A replay waits this long for a full outbox (--outbox-bytes) to drain by
# half before giving the client up as not reading (1013, like the limit).
STALL_SECONDS = 10.0
# Token bucket per socket (rate from --ws-rate-limit, burst BURST_FACTOR x
# the rate): a phone posting bursts is fine, a flood is not.
BURST_FACTOR = 4.0
ABUSE_LIMIT = 50  # consecutive rejected frames before the socket is closed


class WebSocketHandler(tornado.websocket.WebSocketHandler, ServiceHandler):
    user_id: str
    device_id: str
    session_id: str

    def check_origin(self, origin: str) -> bool:
        return self.origin_allowed(origin)

    async def get(self, *args: Any, **kwargs: Any) -> None:
        # Tornado answers a plain GET with a text/html 400; the SPEC wants every
        # HTTP error as JSON, so the checks it would fail are made here first.
        headers = self.request.headers
        if headers.get("Upgrade", "").lower() != "websocket":
            return self.finish_error(400, "bad_request", "expected a WebSocket upgrade (Upgrade: websocket)")
        origin = headers.get("Origin") or headers.get("Sec-Websocket-Origin")
        if origin is not None and not self.check_origin(origin):
            return self.finish_error(403, "forbidden", "origin not allowed")
        await super().get(*args, **kwargs)

    def get_websocket_protocol(self) -> tornado.websocket.WebSocketProtocol | None:
        # Tornado's protocol with our frame reader (handlers/frame_reader.py).
        protocol13 = super().get_websocket_protocol()
        if type(protocol13) is tornado.websocket.WebSocketProtocol13:
            return FrameReader(self, False, protocol13.params)
        return protocol13

    # -- life cycle ---------------------------------------------------------
    async def open(self) -> None:
        self.conn_id = uuid.uuid4().hex[:12]
        self.subscriber = Subscriber()
        self._outbox = Outbox(functools.partial(write_frames, self), self.subscriber, MAX_PENDING_FRAMES,
                              self.services.positions.for_write, byte_limit=self.services.settings.outbox_bytes)
        self._closed = False
        self._subscribed = False
        self._rate = float(self.settings.get("ws_rate_limit", 50.0))
        self._burst = max(1.0, self._rate * BURST_FACTOR)
        self._tokens = self._burst
        self._last_refill = time.monotonic()
        self._rejected = 0
        lifecycle = self.services.lifecycle
        try:
            with lifecycle.working():  # a shutdown waits for the check before Redis goes
                device = await self._authenticate()
        except ApiError as exc:
            self.close(protocol.CLOSE_POLICY, exc.message[:120])
            return
        except Exception as exc:  # checking the session needs Redis and the store
            if dependency_failure(exc) is None:
                raise
            log.warning("websocket auth could not reach a dependency: %r", exc)
            self.close(protocol.CLOSE_TRY_AGAIN, "service unavailable, retry")
            return
        last_id = self.get_query_argument("last_id", None)
        self._release_request()
        if lifecycle.draining:  # shutting down: connect elsewhere
            self.close(protocol.CLOSE_GOING_AWAY, "server shutting down")
            return
        # Counted as work in flight from now: a shutdown lets the set-up finish,
        # then closes the socket with 1001 like any other.
        lifecycle.begin()
        self._setup: asyncio.Future[None] = asyncio.ensure_future(self._connect(device, last_id))
        self._setup.add_done_callback(lambda _: lifecycle.end())
        await asyncio.shield(self._setup)

    def _release_request(self) -> None:
        # The upgrade request stays referenced for the socket's whole life, but
        # nothing reads its headers or query after open: at 10,000 sockets
        # their parsed copies are tens of MB of RSS (bench/compare.py capacity).
        self.request.headers = HTTPHeaders()
        self.request.arguments, self.request.query_arguments = {}, {}

    async def _authenticate(self) -> dict[str, Any]:
        # Browsers cannot set headers on a WebSocket: the query may carry the
        # token, or better a single-use ticket (POST /auth/ws-ticket).
        ticket = self.get_query_argument("ticket", None)
        token = self.get_query_argument("token", None) or self.bearer_token()
        if ticket:
            session = await self.services.sessions.redeem(ticket)
        elif token:
            session = await self.services.sessions.verify(token, "access")
        else:
            raise Unauthorized("missing token")
        self.user_id, self.session_id = session.user_id, session.session_id
        device_id = self.get_query_argument("device_id", None)
        if not device_id:
            raise NotFound("missing device_id")
        if session.device_id is not None and device_id != session.device_id:
            raise Forbidden("this session belongs to another device")
        self._expire_at(session.expires_at)
        device = await self.services.devices.require_live(self.user_id, device_id)
        self.device_id = device_id
        return device

    async def _connect(self, device: dict[str, Any], last_id: str | None) -> None:
        try:
            async with self.services.lifecycle.setup_gate:
                if self._closed:  # gave up while queued: nothing to register or undo
                    return
                self._subscribed = True
                await self.services.delivery.connect(self, device, last_id)
                await self.services.devices.touch(self.user_id, self.device_id)
            await self.services.notifications.prepare(self.user_id)  # after the gate: the socket is live
        except Exception as exc:  # any failure here leaves the socket useless
            hooks.error(exc)
            if dependency_failure(exc) is None:
                log.exception("websocket setup failed")
            else:
                log.warning("websocket setup failed: %r", exc)
            self.close(protocol.CLOSE_TRY_AGAIN, "service unavailable, retry")

    def abort(self) -> None:
        # Tornado's own path for a dropped connection: abort the stream, then on_close.
        self.on_connection_close()

    def _expire_at(self, expires_at: int) -> None:
        """Close with 1008 when the access token expires, unless a ``reauth`` moves this first."""
        timer = getattr(self, "_expiry", None)
        if timer is not None:
            timer.cancel()
        delay = max(0.0, expires_at - time.time())
        self._expiry = asyncio.get_running_loop().call_later(delay, self.close, protocol.CLOSE_POLICY, "token expired")

    async def _reauth(self, token: str) -> None:
        session = await self.services.sessions.verify(token, "access")
        if session.session_id != self.session_id:
            raise Unauthorized("reauth needs a token of this socket's own session", code="invalid_token")
        self._expire_at(session.expires_at)

    def on_close(self) -> None:
        self._closed = True
        timer = getattr(self, "_expiry", None)
        if timer is not None:
            timer.cancel()
        outbox = getattr(self, "_outbox", None)
        if outbox is not None:
            outbox.drop()  # before cleanup saves the cursor
        setup = getattr(self, "_setup", None)
        if setup is not None:
            # Shutdown waits on these before it closes Redis and the store.
            self.services.lifecycle.track_cleanup(asyncio.ensure_future(self._cleanup(setup)))

    async def _cleanup(self, setup: asyncio.Future[None]) -> None:
        # A socket that drops mid-setup is torn down once setup has finished,
        # so a half-registered socket never lingers in the hub or presence.
        await asyncio.wait([setup])
        if not self._subscribed:
            return  # closed before its setup started
        try:
            async with self.services.lifecycle.setup_gate:
                await self.services.delivery.disconnect(self)
                await self.services.devices.touch(self.user_id, self.device_id)
        except Exception as exc:  # cleanup must not raise into the loop
            log.warning("websocket cleanup incomplete: %r", exc)

    # -- outgoing -------------------------------------------------------------
    def send(self, frame: bytes) -> bool:
        """Queue a frame for this loop turn's write (handlers/outbox.py)."""
        conn = self.ws_connection
        if self._closed or conn is None or conn.is_closing():
            return False
        if self._outbox.put(frame):
            return True
        if self._outbox.broken:  # its stream failed; usually on_close is already on its way
            self.close(protocol.CLOSE_SERVER_ERROR, "write failed")
        else:
            log.info("closing a socket that fell %d frames (%d bytes) behind (outbox limit)",
                     self._outbox.backlog, self._outbox.backlog_bytes)
            self.close(protocol.CLOSE_TRY_AGAIN, "client too slow")
        return False

    @property
    def crowded(self) -> bool:
        return self._outbox.crowded

    async def room(self) -> None:
        if not await self._outbox.room(STALL_SECONDS) and not self._outbox.broken:
            log.info("closing a socket that did not drain half of its %d bytes (%d frames) backlog in %g s",
                     self._outbox.backlog_bytes, self._outbox.backlog, STALL_SECONDS)
            self.close(protocol.CLOSE_TRY_AGAIN, "client too slow")

    def probe(self, token: bytes) -> bool:
        conn = self.ws_connection
        if self._closed or conn is None or conn.is_closing():
            return False
        try:
            # Behind everything already handed to the stream; through the outbox's
            # framing, not Tornado's ping (a saving round sends hundreds at once).
            write_frames(self, [], token)
        except (WebSocketClosedError, StreamClosedError):
            return False
        return True

    def on_pong(self, data: bytes) -> None:
        if hasattr(self, "subscriber"):
            self.services.positions.pong(self.subscriber, data)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        self.before_close_reply()  # our close frame, too, goes behind this turn's frames
        super().close(code, reason)

    def before_close_reply(self) -> None:
        """Frames queued this turn go out now, before a close frame (ours, or the reply to the client's:
        handlers/frame_reader.py)."""
        outbox = getattr(self, "_outbox", None)
        if outbox is not None:
            outbox.flush()

    # -- incoming -------------------------------------------------------------
    async def on_message(self, message: str | bytes) -> None:
        if not hasattr(self, "device_id") or self._closed:
            return
        if self._rate and not self._take_token():
            return
        frame_id: str | None = None
        lifecycle = self.services.lifecycle
        lifecycle.begin()
        try:
            if lifecycle.draining:
                raise Unavailable("server shutting down; reconnect to another node", code="shutting_down")
            envelope = protocol.loads(message)
            if not isinstance(envelope, dict):
                raise ApiError("frame must be a JSON object", code="invalid_frame")
            raw_id = envelope.get("id")
            frame_id = raw_id if isinstance(raw_id, str) else None
            await self._dispatch(envelope, frame_id)
        except ValueError:
            self.send(protocol.error_frame("invalid_json", "frame is not valid JSON"))
        except ApiError as exc:
            self._send_error(exc, frame_id)
        except Exception as exc:  # a frame must never kill the socket
            hooks.error(exc)
            mapped = dependency_failure(exc)
            if mapped is None:
                log.exception("websocket frame failed")
                mapped = ApiError("internal error", code="internal_error", status=500)
            self._send_error(mapped, frame_id)
        finally:
            lifecycle.end()

    async def _dispatch(self, envelope: dict[str, Any], frame_id: str | None) -> None:
        kind = envelope.get("type")
        data = envelope.get("data") if envelope.get("data") is not None else {}
        notifications = self.services.notifications
        ack: dict[str, Any] = {}
        if kind == protocol.PING:
            self.send(protocol.frame(protocol.PONG, {"timestamp": protocol.now_iso()}))
        elif kind == protocol.NOTIFICATION_ACTION:
            fields = schemas.load(schemas.WS_ACTION, data)
            await notifications.act(self.user_id, fields["notification_id"], fields["action"], self.device_id)
            ack["notification_id"] = fields["notification_id"]
        elif kind == protocol.INVOKE_ACTION:
            fields = schemas.load(schemas.WS_INVOKE, data)
            await notifications.invoke(
                self.user_id, fields["notification_id"], fields["action_id"], fields.get("reply_text"), self.device_id
            )
            ack["notification_id"] = fields["notification_id"]
        elif kind == protocol.REAUTH:
            await self._reauth(schemas.load(schemas.WS_REAUTH, data)["token"])
        elif kind == protocol.STREAM_ACK:
            fields = schemas.load(schemas.WS_STREAM_ACK, data)
            self.services.positions.stream_ack(self.subscriber, fields["last_id"])
        elif kind == protocol.NEW_NOTIFICATION:
            fields = schemas.load(schemas.NOTIFICATION_CREATE, data)
            try:
                record, created = await notifications.create(self.user_id, fields, self.device_id)
            except Dropped as dropped:  # a rule said so: nothing stored or sent
                ack.update(dropped=True, rule_id=dropped.rule_id)
            else:
                if frame_id is not None:  # the view is only for the ack (a phone posting without ids gets none)
                    ack.update(notification_id=record["id"], created=created, notification=notification_view(record))
        else:
            raise ApiError(f"unknown frame type {kind!r}", code="unknown_type")
        if frame_id is not None:
            self.send(protocol.frame(protocol.ACK, {"id": frame_id, **ack}))

    def _send_error(self, exc: ApiError, frame_id: str | None) -> None:
        hooks.error(exc)  # counts it if a Redis/store failure caused it
        data: dict[str, Any] = exc.to_dict()
        if exc.retry_after is not None:  # rate_limited: REST's Retry-After, in the frame
            data["retry_after"] = exc.retry_after
        if frame_id is not None:
            data["id"] = frame_id
        self.send(protocol.frame(protocol.ERROR, data))

    def _take_token(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last_refill) * self._rate)
        self._last_refill = now
        if self._tokens >= 1:
            self._tokens -= 1
            self._rejected = 0
            return True
        self._rejected += 1
        if self._rejected >= ABUSE_LIMIT:
            self.close(protocol.CLOSE_POLICY, "rate limit exceeded")
        else:
            self.send(protocol.error_frame("rate_limited", "too many frames; slow down"))
        return False


routes = [(r"/ws", WebSocketHandler)]
