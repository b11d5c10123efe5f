"""Client frames as the wire brings them: together, split, fragmented, oversized, malformed.

The node reads frames with its own reader (``handlers/frame_reader.py``), not
Tornado's; these tests hold it to what RFC 6455 and Tornado's reader do, on a
bare socket against a real node.
"""
from __future__ import annotations

import asyncio
import json
import socket

from tests.harness import new_user
from tests.rawws import RawWS, client_frame

PING, PONG, CLOSE, TEXT, CONTINUATION = 0x9, 0xA, 0x8, 0x1, 0x0


def post(frame_id: str, title: str) -> bytes:
    body = {"type": "new_notification", "id": frame_id, "data": {"app_name": "Slack", "title": title}}
    return json.dumps(body).encode()


def next_ack(raw: RawWS) -> dict:
    while True:
        frame = raw.recv_json()
        if frame["type"] in ("ack", "error"):
            return frame


def ending(raw: RawWS) -> int | None:
    """Read until the server ends the socket: its close code, or None if it dropped it without one."""
    raw.sock.settimeout(10)
    try:
        while True:
            opcode, payload = raw.frame()
            if opcode == CLOSE:
                return int.from_bytes(payload[:2], "big")
    except (ConnectionError, OSError):
        return None


async def socket_for(node) -> tuple[RawWS, object]:
    user = await new_user(node)
    device = await user.device("mobile")
    return RawWS(node.port, f"token={user.token}&device_id={device}"), user


async def test_frames_arriving_in_one_packet_are_each_handled_in_order(node):
    raw, _ = await socket_for(node)
    packet = b"".join([client_frame(TEXT, post("a", "one")), client_frame(PING, b"probe"),
                       client_frame(TEXT, post("b", "two")), client_frame(TEXT, post("c", "three"))])
    raw.sock.sendall(packet)
    pongs, acks = [], []
    while len(acks) < 3 or not pongs:
        opcode, payload = raw.frame()
        if opcode == PONG:
            pongs.append(payload)
        elif opcode == TEXT and json.loads(payload)["type"] == "ack":
            acks.append(json.loads(payload))
    assert pongs == [b"probe"]
    assert [a["data"]["id"] for a in acks] == ["a", "b", "c"]
    assert [a["data"]["notification"]["title"] for a in acks] == ["one", "two", "three"]


async def test_a_frame_arriving_a_byte_at_a_time_is_handled(node):
    raw, _ = await socket_for(node)
    raw.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    frame = client_frame(TEXT, post("slow", "x" * 300))  # a 16-bit length: every header form is split
    for i in range(len(frame)):
        raw.sock.sendall(frame[i:i + 1])
        if i < 12 or i % 50 == 0:
            await asyncio.sleep(0.005)
    ack = next_ack(raw)
    assert ack["type"] == "ack" and ack["data"]["id"] == "slow"
    assert ack["data"]["notification"]["title"] == "x" * 300


async def test_a_fragmented_message_with_a_ping_between_its_fragments(node):
    raw, _ = await socket_for(node)
    message = post("frag", "in three parts")
    parts = [message[:10], message[10:20], message[20:]]
    raw.sock.sendall(client_frame(TEXT, parts[0], fin=False) + client_frame(PING, b"mid")
                     + client_frame(CONTINUATION, parts[1], fin=False))
    assert raw.frame() == (PONG, b"mid")
    raw.sock.sendall(client_frame(CONTINUATION, parts[2]))
    ack = next_ack(raw)
    assert ack["data"]["id"] == "frag" and ack["data"]["notification"]["title"] == "in three parts"


async def test_a_message_over_the_limit_is_closed_with_1009_before_its_payload_arrives(node):
    raw, _ = await socket_for(node)
    # Only the header of a 1 MiB frame: the node must not wait for (or buffer) the payload.
    raw.sock.sendall(client_frame(TEXT, b"", size=1 << 20)[:14])
    assert ending(raw) == 1009
    # Fragments that only add up past the limit (64 KiB by default) are caught too.
    raw, _ = await socket_for(node)
    raw.sock.sendall(client_frame(TEXT, b"[" * 40_000, fin=False) + client_frame(CONTINUATION, b"1" * 40_000))
    assert ending(raw) == 1009


async def test_protocol_violations_drop_the_socket_and_the_node_serves_on(node):
    violations = {
        "reserved bit set": client_frame(TEXT, post("r", "x"), rsv=0x40),
        "fragmented control frame": client_frame(PING, b"x", fin=False),
        "control frame over 125 bytes": client_frame(PING, b"x" * 126),
        "continuation of nothing": client_frame(CONTINUATION, b"x"),
        "new message inside a fragmented one": client_frame(TEXT, b"{", fin=False) + client_frame(TEXT, b"{}"),
        "text that is not UTF-8": client_frame(TEXT, b"\xff\xfe"),
        "unknown opcode": client_frame(0x3, b"x"),
    }
    for label, data in violations.items():
        raw, _ = await socket_for(node)
        raw.sock.sendall(data)
        assert ending(raw) is None, label
    raw, _ = await socket_for(node)
    raw.sock.sendall(client_frame(TEXT, post("after", "still here")))
    assert next_ack(raw)["data"]["id"] == "after"


async def test_a_close_frame_is_answered_with_its_code(node):
    raw, _ = await socket_for(node)
    raw.sock.sendall(client_frame(TEXT, post("last", "before close")) + client_frame(CLOSE, b"\x03\xe8bye"))
    assert next_ack(raw)["data"]["id"] == "last"  # frames before the close are still handled
    assert ending(raw) == 1000
