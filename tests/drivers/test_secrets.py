"""pcapng Decryption Secrets Blocks (issue 11 §6): the TLS keys inside the file are found, and
the native engine hands the encrypted connections to the tshark engine, which decrypts them;
--tls-keylog keeps working."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from qosinspect.capture import iter_events
from qosinspect.capture.pcapfile import CaptureFile
from qosinspect.capture.secrets import TLS_KEY_LOG, decryption_secrets
from qosinspect.drivers import engines, iter_capture_events
from qosinspect.events import Anomaly, ConnectionClosed, MqttPacketEvent
from qosinspect.testing.tools import PROJECT_ROOT, require_tool

CAPTURES = PROJECT_ROOT / "captures"
DSB = CAPTURES / "field" / "mosquitto-tls-dsb.pcapng"
PLAIN = CAPTURES / "mosquitto-tls.pcap"
KEYLOG = CAPTURES / "mosquitto-tls.keylog"
PORT = 51957


def _rows(events: list[object]) -> list[tuple[int, int, str, object]]:
    return [(e.frame, e.conn.conn_id, e.conn.transport, e.packet) for e in events
            if type(e) is MqttPacketEvent]


def test_the_secrets_block_is_read() -> None:
    with CaptureFile(DSB) as cap:
        found = decryption_secrets(cap)
    assert [(s.secrets_type, s.kind) for s in found] == [(TLS_KEY_LOG, "TLS key log")]
    assert found[0].data.rstrip(b"\x00") == KEYLOG.read_bytes().rstrip(b"\x00")
    with CaptureFile(PLAIN) as cap:
        assert decryption_secrets(cap) == []


def test_native_engine_decodes_the_encrypted_connections_through_tshark(
        caplog: pytest.LogCaptureFixture) -> None:
    require_tool("tshark")
    with caplog.at_level(logging.WARNING, logger="qosinspect"):
        evs = list(iter_capture_events(DSB, ports=[PORT]))
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "Decryption Secrets Block" in said and "tshark engine" in said
    assert "connections 0, 1" in said
    # the same MQTT packets as the tshark engine with the key log file beside the capture
    keylog = list(iter_capture_events(PLAIN, ports=[PORT], engine="tshark",
                                      tls_keylog=str(KEYLOG)))
    ours = _rows(evs)
    assert len(ours) == 22
    assert [(f, c, p) for f, c, _, p in ours] == [(f, c, p) for f, c, _, p in _rows(keylog)]
    # ... on the native engine's connections: TLS, with their TCP statistics
    assert {t for _, _, t, _ in ours} == {"tls"}
    closed = [e for e in evs if type(e) is ConnectionClosed]
    assert len(closed) == 2 and all(e.tcp is not None for e in closed)
    frames = [getattr(e, "frame", 0) for e in evs]
    assert frames == sorted(frames)  # merged in frame order


def test_without_tshark_they_stay_encrypted_and_it_is_said(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(engines.shutil, "which", lambda name: None)
    with caplog.at_level(logging.WARNING, logger="qosinspect"):
        evs = list(iter_capture_events(DSB, ports=[PORT]))
    assert "tshark is not installed" in " ".join(r.getMessage() for r in caplog.records)
    assert not _rows(evs)
    assert len([e for e in evs if type(e) is Anomaly and e.kind == "encrypted"]) == 2


def test_the_pure_capture_layer_does_not_decrypt() -> None:
    """capture.iter_events (no process) still reports the connections as encrypted."""
    assert not _rows(list(iter_events(DSB, ports=[PORT])))


def test_tls_keylog_keeps_working(tmp_path: Path) -> None:
    require_tool("tshark")
    evs = list(iter_capture_events(PLAIN, ports=[PORT], engine="tshark",
                                   tls_keylog=str(KEYLOG)))
    assert len(_rows(evs)) == 22
