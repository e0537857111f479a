"""Unit tests of the broker's helpers: the subscription trie, the WebSocket server side, the
password file and the mosquitto-format ACL."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qosinspect.broker.auth import (
    AccessControl,
    Authenticator,
    PasswordFile,
    hash_password,
    verify_password,
)
from qosinspect.broker.outgoing import encode_out
from qosinspect.broker.routing import SubscriptionIndex
from qosinspect.broker.websocket import WebSocketError, WebSocketServer
from qosinspect.errors import ConfigError, TopicFilterInvalid
from qosinspect.mqtt.codec import encode
from qosinspect.mqtt.packets import ConnAck, PubAck, PubComp, Publish, PubRec, PubRel
from qosinspect.mqtt.properties import Properties
from qosinspect.mqtt.topics import parse_shared, topic_matches, validate_topic_filter

# -- routing ------------------------------------------------------------------------------------

LEVELS = st.sampled_from(["a", "b", "c", "", "$SYS", "$x"])
FILTER_LEVELS = st.sampled_from(["a", "b", "c", "", "+", "$SYS"])


@st.composite
def topic_names(draw: st.DrawFn) -> str:
    return "/".join(draw(st.lists(LEVELS, min_size=1, max_size=4)))


@st.composite
def topic_filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(FILTER_LEVELS, min_size=1, max_size=4))
    if draw(st.booleans()):
        levels.append("#")
    f = "/".join(levels)
    if draw(st.integers(0, 4)) == 0:
        f = f"$share/g{draw(st.integers(0, 1))}/{f}"
    try:
        validate_topic_filter(f)
    except TopicFilterInvalid:
        return "a/+"
    return f


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["c1", "c2", "c3"]), topic_filters()), max_size=12),
       st.lists(st.tuples(st.sampled_from(["c1", "c2", "c3"]), topic_filters()), max_size=6),
       st.lists(topic_names(), min_size=1, max_size=6))
def test_trie_matches_like_topic_matches(added: list[tuple[str, str]],
                                         removed: list[tuple[str, str]],
                                         names: list[str]) -> None:
    """The trie (with its cache, across adds and removes) finds exactly the filters that
    ``topic_matches`` accepts: wildcards [MQTT-4.7.1-1] [MQTT-4.7.1-2], ``$`` [MQTT-4.7.2-1]."""
    index: SubscriptionIndex[int] = SubscriptionIndex()
    want: dict[tuple[str, str], int] = {}
    for n, (cid, f) in enumerate(added):
        index.add(cid, f, n)
        want[(cid, f)] = n
        index.match(names[0])                       # fill the cache between changes
    for cid, f in removed:
        assert index.remove(cid, f) == ((cid, f) in want)
        want.pop((cid, f), None)
    for name in names:
        got: set[tuple[str, str, int]] = set()
        for node in index.match(name):
            got.update(("", cid, v) for cid, v in node.subs.items())
            for group, members in node.shared.items():
                got.update((group, cid, v) for cid, v in members.items())
        expected = set()
        for (cid, f), v in want.items():
            shared = parse_shared(f)
            if topic_matches(shared.topic_filter if shared else f, name):
                expected.add((shared.share_name if shared else "", cid, v))
        assert got == expected
    for cid, f in list(want):
        index.remove(cid, f)
    assert index.root.empty()                        # everything pruned


# -- WebSocket ----------------------------------------------------------------------------------

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
REQUEST = (f"GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Protocol: mqtt\r\n"
           "Sec-WebSocket-Version: 13\r\n\r\n").encode()


def masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    head = bytes((0x80 * fin | opcode,))
    if n < 126:
        head += bytes((0x80 | n,))
    elif n < 65536:
        head += bytes((0x80 | 126,)) + n.to_bytes(2, "big")
    else:
        head += bytes((0x80 | 127,)) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_websocket_handshake_rfc6455_and_mqtt_subprotocol_MQTT_6_0_0_3() -> None:
    ws = WebSocketServer()
    data, reply = ws.feed(REQUEST[:20])
    assert (data, reply) == (b"", b"")                 # waits for the whole head
    data, reply = ws.feed(REQUEST[20:])
    assert reply.startswith(b"HTTP/1.1 101")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in reply   # RFC 6455 1.3
    assert b"Sec-WebSocket-Protocol: mqtt" in reply and ws.path == "/mqtt"


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=5), st.integers(1, 50))
def test_websocket_stream_is_the_concatenation_of_frames_MQTT_6_0_0_2(
        chunks: list[bytes], cut: int) -> None:
    ws = WebSocketServer()
    ws.feed(REQUEST)
    wire = b"".join(masked(0x2 if i == 0 else 0x0, c, fin=i == len(chunks) - 1)
                    for i, c in enumerate(chunks))
    out = b""
    for i in range(0, len(wire), cut):                 # any TCP segmentation
        data, _ = ws.feed(wire[i:i + cut])
        out += data
    assert out == b"".join(chunks)


def test_websocket_ping_close_and_refusals_MQTT_6_0_0_1() -> None:
    ws = WebSocketServer()
    ws.feed(REQUEST)
    data, reply = ws.feed(masked(0x9, b"hi"))
    assert data == b"" and reply == b"\x8a\x02hi"      # pong with the same payload
    data, reply = ws.feed(masked(0x8, b"\x03\xe8"))
    assert ws.closed and reply == b"\x88\x02\x03\xe8"
    text = WebSocketServer()
    text.feed(REQUEST)
    with pytest.raises(WebSocketError, match=r"MQTT-6\.0\.0-1"):
        text.feed(masked(0x1, b"text"))
    assert text.pending.startswith(b"\x88")            # close frame to send
    unmasked = WebSocketServer()
    unmasked.feed(REQUEST)
    with pytest.raises(WebSocketError, match="unmasked"):
        unmasked.feed(b"\x82\x02ab")
    big = WebSocketServer(max_frame=1000)
    big.feed(REQUEST)
    with pytest.raises(WebSocketError, match="exceeds"):
        big.feed(b"\x82\xfe\xff\xff" + b"\x00" * 4)


@pytest.mark.parametrize("head", [
    b"POST / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00\r\n\r\n",
])
def test_websocket_bad_requests_get_400(head: bytes) -> None:
    ws = WebSocketServer()
    with pytest.raises(WebSocketError):
        ws.feed(head)
    assert ws.pending.startswith(b"HTTP/1.1 400")


def test_websocket_head_is_bounded() -> None:
    ws = WebSocketServer()
    with pytest.raises(WebSocketError, match="too long"):
        ws.feed(b"GET / HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 9000)


# -- passwords ----------------------------------------------------------------------------------

def test_password_hash_is_salted_pbkdf2_in_mosquitto_format() -> None:
    a, b = hash_password("secret"), hash_password("secret")
    assert a != b and a.startswith("$7$") and b.startswith("$7$")   # fresh salt each time
    assert verify_password("secret", a) and not verify_password("Secret", a)
    salt = base64.b64decode(a.split("$")[3])
    digest = hashlib.pbkdf2_hmac("sha512", b"secret", salt, int(a.split("$")[2]))
    assert base64.b64decode(a.split("$")[4]) == digest


def test_mosquitto_legacy_sha512_and_garbage() -> None:
    salt = b"0123456789ab"
    legacy = "$6$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(
        hashlib.sha512(b"pw" + salt).digest()).decode()
    assert verify_password("pw", legacy) and not verify_password("px", legacy)
    for bad in ("", "plain", "$7$x$y$z", "$7$10$!!$!!", "$9$a$b"):
        assert not verify_password("pw", bad)


def test_password_file_lines_and_errors(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "p")
    with open(path, "w", encoding="utf-8") as f:
        f.write("# comment\n\nalice:" + hash_password("a") + "\n")
    pw = PasswordFile.load(path)
    assert pw.check("alice", b"a") and not pw.check("alice", None) and not pw.check("x", b"a")
    with open(path, "w", encoding="utf-8") as f:
        f.write("no colon here\n")
    with pytest.raises(ConfigError, match="line 1"):
        PasswordFile.load(path)
    assert PasswordFile.load(os.path.join(tmp_path, "missing")).users == {}


def test_authenticator_rules() -> None:
    pw = PasswordFile()
    pw.set("u", "p")
    closed = Authenticator(False, pw)
    assert closed.authenticate(None, None) == 5                 # anonymous off by default
    assert closed.authenticate("u", b"p") == 0
    assert closed.authenticate("u", b"x") == 4
    assert Authenticator(True, pw).authenticate(None, None) == 0
    assert Authenticator(False, None).authenticate("u", b"p") == 5   # nobody to check against


# -- ACL ----------------------------------------------------------------------------------------

ACL = """
# anonymous clients
topic read public/#

user alice
topic readwrite alice/#
topic deny alice/secret
topic	write	tabs/ok
topic sensors/+/temp

user bob
topic read alice/shared

pattern write devices/%c/up
pattern read users/%u/#
"""


def test_acl_mosquitto_format() -> None:
    acl = AccessControl.parse(ACL)

    def may(access: str, topic: str, user: str | None, cid: str = "c1",
            subscribe: bool = False) -> bool:
        return acl.allowed(access, topic, client_id=cid, username=user, subscribe=subscribe)

    assert may("read", "public/news", None) and not may("write", "public/news", None)
    assert not may("read", "public/news", "alice")     # user rules replace anonymous ones
    assert may("write", "alice/x", "alice") and may("read", "alice/x/y", "alice")
    assert not may("read", "alice/secret", "alice")     # deny wins
    assert may("write", "tabs/ok", "alice")             # tab separated
    assert may("write", "sensors/k/temp", "alice") and may("read", "sensors/k/temp", "alice")
    assert may("read", "alice/shared", "bob") and not may("write", "alice/shared", "bob")
    assert may("write", "devices/c1/up", "bob") and not may("write", "devices/c2/up", "bob", "c1")
    assert may("read", "users/bob/inbox", "bob") and not may("read", "users/bob/inbox", "alice")
    assert not may("read", "users//inbox", None)        # %u never matches anonymous clients
    # subscriptions: a filter is allowed when it lies within a granted filter
    assert may("read", "alice/+/x", "alice", subscribe=True)
    assert may("read", "alice/#", "alice", subscribe=True)        # as mosquitto: allowed...
    assert not may("read", "alice/secret", "alice", subscribe=True)
    assert not may("read", "alice/secret", "alice")               # ...but never delivered
    assert not may("read", "#", "alice", subscribe=True)
    assert may("read", "sensors/+/temp", "alice", subscribe=True)
    assert not may("read", "sensors/#", "alice", subscribe=True)


@pytest.mark.parametrize("text", ["user\n", "topic\n", "topic read\n", "include x\n"])
def test_acl_errors_name_the_line(text: str) -> None:
    with pytest.raises(ConfigError, match="line 1"):
        AccessControl.parse(text)


# -- the server's fast encoder ------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.sampled_from([3, 4, 5]), st.integers(0, 2), st.booleans(), st.booleans(),
       st.text(min_size=1, max_size=40).filter(lambda t: not ({"+", "#", "\x00"} & set(t))),
       st.one_of(st.binary(max_size=200), st.integers(100, 20000).map(lambda n: b"x" * n)),
       st.integers(1, 65535), st.booleans())
def test_fast_encoder_writes_what_the_codec_writes(version: int, qos: int, dup: bool,
                                                   retain: bool, topic: str, payload: bytes,
                                                   pid: int, with_props: bool) -> None:
    props = Properties.of(message_expiry_interval=7, subscription_identifier=[3]) \
        if with_props else Properties()
    p = Publish(topic, payload, qos, dup and qos > 0, retain, pid if qos else None, props)
    want = encode(p if version >= 5 else p._replace(properties=Properties()), version)
    cache: dict[str, bytes] = {}
    assert encode_out(p, version) == want              # properties never reach 3.1.x
    assert encode_out(p, version, cache) == encode_out(p, version, cache) == want
    for ack in (PubAck(pid), PubRec(pid), PubRel(pid), PubComp(pid), PubAck(pid, 0x10)):
        if version >= 5 or not ack.reason_code:
            assert encode_out(ack, version) == encode(ack, version)
    connack = ConnAck(False, 0, Properties.of(receive_maximum=5))
    assert encode_out(connack, version) == encode(
        connack if version >= 5 else ConnAck(False, 0), version)
