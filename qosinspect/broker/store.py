"""Optional persistence of the broker in a SQLite file: sessions, queues and retained messages.

The engine stays pure: it records what changed (``engine.changes`` for retained messages,
sessions and subscriptions; each stored session's :attr:`Session.journal
<qosinspect.mqtt.session.Session.journal>` for its messages) and the server calls
:meth:`SqliteStore.commit` after each batch of input, *before* it writes any packet out. So a
PUBACK or PUBREC never leaves before the message it acknowledges is on disk in every stored
subscriber's queue, and a broker restart loses no acknowledged QoS 1/2 message (write-ahead,
one transaction per batch: many messages share one commit).

What is stored: retained messages (with their expiry); every session with a non-zero expiry
(3.1.x clean session 0, MQTT 5 Session Expiry Interval > 0): its subscriptions, its outbound
messages (queued, or in flight with their packet id and QoS 2 step, in order) and the inbound
QoS 2 packet ids awaiting PUBREL; and the next packet id. What is not: connections (a restart
ends them), pending delayed wills, QoS 0 messages. After a restart a session's expiry counts
from the moment the store was loaded.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed batch survives the broker
process being killed; a power cut may lose the last batches (``synchronous="FULL"`` closes that
gap at a cost per commit).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..mqtt.packets import Publish
from ..mqtt.qos import OutFlight, PacketIdAllocator, SendState
from ..mqtt.session import QueuedMessage, Session
from .engine import BrokerEngine, BrokerSession, SubOptions
from .retained import props_blob, props_of

__all__ = ["SqliteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS retained (
    topic TEXT PRIMARY KEY, payload BLOB NOT NULL, qos INTEGER NOT NULL,
    props BLOB NOT NULL, expires_ns INTEGER);
CREATE TABLE IF NOT EXISTS sessions (
    client_id TEXT PRIMARY KEY, expiry_s INTEGER NOT NULL, version INTEGER NOT NULL,
    next_pid INTEGER NOT NULL DEFAULT 1, username TEXT);
CREATE TABLE IF NOT EXISTS subscriptions (
    client_id TEXT NOT NULL, topic_filter TEXT NOT NULL, qos INTEGER NOT NULL,
    no_local INTEGER NOT NULL, rap INTEGER NOT NULL, retain_handling INTEGER NOT NULL,
    sub_id INTEGER, PRIMARY KEY (client_id, topic_filter));
CREATE TABLE IF NOT EXISTS messages (
    client_id TEXT NOT NULL, seq INTEGER NOT NULL, packet_id INTEGER,
    state INTEGER NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL,
    retain INTEGER NOT NULL, props BLOB NOT NULL, expires_ns INTEGER,
    PRIMARY KEY (client_id, seq));
CREATE TABLE IF NOT EXISTS inbound_qos2 (
    client_id TEXT NOT NULL, packet_id INTEGER NOT NULL, PRIMARY KEY (client_id, packet_id));
"""
_QUEUED = 0


class SqliteStore:
    """Sessions, queues and retained messages of a :class:`BrokerEngine` in one SQLite file."""

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL") -> None:
        self.path = str(path)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None,
                                      check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={synchronous}")
            self.db.executescript(_SCHEMA)
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(sessions)")}
            if "username" not in columns:       # a file written before sessions had users
                self.db.execute("ALTER TABLE sessions ADD COLUMN username TEXT")
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the persistence file: {exc}",
                              path=self.path) from None
        self.commits = 0

    def close(self) -> None:
        self.db.close()

    # -- loading ----------------------------------------------------------------------------------

    def load(self, engine: BrokerEngine, now: int) -> None:
        """Fill a fresh engine from the file and switch its change recording on."""
        db = self.db
        cfg = engine.config
        for topic, payload, qos, props, expires_ns in db.execute(
                "SELECT topic, payload, qos, props, expires_ns FROM retained"):
            engine.retained.set(topic, payload, qos, props_of(props), expires_ns,
                                engine.retained_seq())
        max_seq = 0
        for cid, expiry_s, version, next_pid, username in db.execute(
                "SELECT client_id, expiry_s, version, next_pid, username FROM sessions"
        ).fetchall():
            state = Session(version=version, receive_maximum=cfg.max_inflight,
                            max_queued=cfg.max_queued_messages,
                            hard_limit=cfg.max_offline_messages)
            sess = BrokerSession(cid, state, expiry_s=expiry_s, disconnected_ns=now,
                                 version=version, username=username)
            sender = state.sender
            sender.ids = PacketIdAllocator(next_pid)
            for seq, pid, st, topic, payload, qos, retain, props, expires_ns in db.execute(
                    "SELECT seq, packet_id, state, topic, payload, qos, retain, props, "
                    "expires_ns FROM messages WHERE client_id = ? ORDER BY seq", (cid,)):
                max_seq = max(max_seq, seq)
                pub = Publish(topic, payload, qos, False, bool(retain), None, props_of(props))
                if st == _QUEUED or not pid:
                    state.enqueue(QueuedMessage(pub, expires_ns, seq))
                else:
                    sender.in_flight[pid] = OutFlight(pub._replace(packet_id=pid),
                                                      SendState(st), now, now, tag=seq)
                    sender.ids.in_use.add(pid)
            for (pid,) in db.execute(
                    "SELECT packet_id FROM inbound_qos2 WHERE client_id = ?", (cid,)):
                state.receiver.awaiting_pubrel[pid] = now
            for tf, qos, no_local, rap, rh, sub_id in db.execute(
                    "SELECT topic_filter, qos, no_local, rap, retain_handling, sub_id "
                    "FROM subscriptions WHERE client_id = ?", (cid,)):
                sess.subs[tf] = SubOptions(qos, bool(no_local), bool(rap), rh, sub_id)
            state.journal = []
            engine.restore_session(sess)
        engine.restart_tags(max_seq)
        engine.changes = []

    # -- writing ----------------------------------------------------------------------------------

    def commit(self, engine: BrokerEngine) -> None:
        """Write every change the engine recorded since the last commit, in one transaction."""
        changes = engine.changes
        dirty = engine.dirty_sessions
        if not changes and not dirty:
            return
        db = self.db
        db.execute("BEGIN")
        try:
            if changes:
                for change in changes:
                    self._apply(change)
                changes.clear()
            for cid, sess in dirty.items():
                journal = sess.state.journal
                if journal:
                    for entry in journal:
                        self._journal(cid, entry)
                    journal.clear()
                db.execute("UPDATE sessions SET next_pid = ? WHERE client_id = ?",
                           (sess.state.sender.ids.next_id, cid))
            dirty.clear()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.commits += 1

    def _apply(self, change: tuple[Any, ...]) -> None:
        db = self.db
        kind = change[0]
        if kind == "retain":
            msg, expires_ns = change[1], change[2]
            db.execute("INSERT OR REPLACE INTO retained VALUES (?, ?, ?, ?, ?)",
                       (msg.topic, msg.payload, msg.qos, props_blob(msg.properties),
                        expires_ns))
        elif kind == "unretain":
            db.execute("DELETE FROM retained WHERE topic = ?", (change[1],))
        elif kind == "session":
            db.execute("INSERT INTO sessions (client_id, expiry_s, version, username) "
                       "VALUES (?, ?, ?, ?) ON CONFLICT (client_id) DO UPDATE SET "
                       "expiry_s = excluded.expiry_s, version = excluded.version, "
                       "username = excluded.username", change[1:5])
        elif kind == "end_session":
            for table in ("sessions", "subscriptions", "messages", "inbound_qos2"):
                db.execute(f"DELETE FROM {table} WHERE client_id = ?", (change[1],))
        elif kind == "sub":
            cid, tf, opt = change[1], change[2], change[3]
            db.execute("INSERT OR REPLACE INTO subscriptions VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (cid, tf, opt.qos, int(opt.no_local), int(opt.retain_as_published),
                        opt.retain_handling, opt.sub_id))
        elif kind == "unsub":
            db.execute("DELETE FROM subscriptions WHERE client_id = ? AND topic_filter = ?",
                       change[1:3])
        else:
            raise ValueError(f"unknown store change {kind!r}")

    def _journal(self, cid: str, entry: tuple[Any, ...]) -> None:
        db = self.db
        kind = entry[0]
        if kind == "queued":
            item: QueuedMessage = entry[1]
            if item.tag is None:
                return
            p = item.publish
            db.execute("INSERT OR REPLACE INTO messages VALUES (?, ?, NULL, 0, ?, ?, ?, ?, ?, ?)",
                       (cid, item.tag, p.topic, p.payload, p.qos, int(p.retain),
                        props_blob(p.properties), item.expires_ns))
        elif kind in ("dropped", "done"):
            if entry[1] is not None:
                db.execute("DELETE FROM messages WHERE client_id = ? AND seq = ?",
                           (cid, entry[1]))
        elif kind == "sent":
            if entry[1] is not None:
                p = entry[2]
                st = SendState.WAIT_PUBACK if p.qos == 1 else SendState.WAIT_PUBREC
                db.execute("UPDATE messages SET packet_id = ?, state = ?, expires_ns = NULL "
                           "WHERE client_id = ? AND seq = ?", (p.packet_id, int(st), cid,
                                                              entry[1]))
        elif kind == "pubrec":
            db.execute("UPDATE messages SET state = ? WHERE client_id = ? AND packet_id = ?",
                       (int(SendState.WAIT_PUBCOMP), cid, entry[1]))
        elif kind == "in2":
            db.execute("INSERT OR IGNORE INTO inbound_qos2 VALUES (?, ?)", (cid, entry[1]))
        elif kind == "rel2":
            db.execute("DELETE FROM inbound_qos2 WHERE client_id = ? AND packet_id = ?",
                       (cid, entry[1]))
        elif kind == "clear":
            db.execute("DELETE FROM messages WHERE client_id = ?", (cid,))
            db.execute("DELETE FROM inbound_qos2 WHERE client_id = ?", (cid,))

