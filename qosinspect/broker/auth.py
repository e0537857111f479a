"""Who may connect and which topics they may use: a password file and a mosquitto ACL file.

Passwords are stored as salted PBKDF2-SHA512 hashes in mosquitto's own ``$7$`` format
(``user:$7$<iterations>$<b64 salt>$<b64 hash>``), so a file made by ``mosquitto_passwd`` works here
and one made by ``qosinspect passwd`` works in mosquitto. mosquitto's older ``$6$`` (salted
SHA-512) lines are accepted too. Comparison is constant-time.

The ACL file follows mosquitto's ``acl_file`` syntax, so existing files work::

    # lines before the first "user" apply to anonymous clients
    topic read public/#
    user alice
    topic readwrite alice/#          # access defaults to readwrite
    topic deny alice/secret
    pattern write devices/%c/%u/up   # for every client: %c client id, %u user name

A ``deny`` rule that matches wins over any grant. A subscription filter is allowed for reading
when it lies entirely within a granted filter (``a/+/c`` within ``a/#``) and not entirely within
a denied one, as mosquitto checks; every message is checked again on delivery, so ``a/#``
granted with ``a/secret`` denied subscribes but never receives ``a/secret``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..mqtt.topics import topic_matches

__all__ = [
    "READ",
    "WRITE",
    "AccessControl",
    "AclRule",
    "Authenticator",
    "PasswordFile",
    "hash_password",
    "verify_password",
]

READ = "read"
WRITE = "write"
_ITERATIONS = 20_000
_SALT_BYTES = 12


def hash_password(password: str, *, iterations: int = _ITERATIONS, salt: bytes | None = None
                  ) -> str:
    """A ``$7$`` PBKDF2-SHA512 hash with a fresh random salt (mosquitto compatible)."""
    salt = salt if salt is not None else os.urandom(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return (f"$7${iterations}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}")


def verify_password(password: str | bytes, stored: str) -> bool:
    """Whether ``password`` matches a ``$7$`` or ``$6$`` hash; False for anything else."""
    pw = password.encode("utf-8") if isinstance(password, str) else password
    parts = stored.split("$")
    try:
        if len(parts) == 5 and parts[1] == "7":
            iterations = int(parts[2])
            salt = base64.b64decode(parts[3])
            want = base64.b64decode(parts[4])
            got = hashlib.pbkdf2_hmac("sha512", pw, salt, iterations)
        elif len(parts) == 4 and parts[1] == "6":
            salt = base64.b64decode(parts[2])
            want = base64.b64decode(parts[3])
            got = hashlib.sha512(pw + salt).digest()
        else:
            return False
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


@dataclass
class PasswordFile:
    """``user:hash`` lines; ``set`` and ``save`` implement ``qosinspect passwd``."""

    users: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path, *, must_exist: bool = False) -> PasswordFile:
        """Read a password file; a missing one is empty unless ``must_exist``."""
        users: dict[str, str] = {}
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            if must_exist:
                raise ConfigError("password file not found", path=str(path)) from None
            return cls()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(str(exc), path=str(path)) from None
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            if not sep or not user:
                raise ConfigError(f"line {n}: expected user:hash", path=str(path))
            users[user] = hashed
        return cls(users)

    def set(self, user: str, password: str) -> None:
        if ":" in user or not user or user != user.strip():
            raise ConfigError(f"invalid user name {user!r} (no ':' and no surrounding spaces)")
        self.users[user] = hash_password(password)

    def delete(self, user: str) -> bool:
        return self.users.pop(user, None) is not None

    def save(self, path: str | Path) -> None:
        Path(path).write_text("".join(f"{u}:{h}\n" for u, h in self.users.items()),
                              encoding="utf-8")
        os.chmod(path, 0o600)

    def check(self, user: str, password: bytes | None) -> bool:
        stored = self.users.get(user)
        if stored is None or password is None:
            return False
        return verify_password(password, stored)


@dataclass(frozen=True, slots=True)
class AclRule:
    access: str          # read, write, readwrite or deny
    topic: str
    pattern: bool = False


def _filter_within(granted: str, wanted: str) -> bool:
    """Whether every topic ``wanted`` can match is also matched by ``granted``; a grant
    starting with a wildcard never covers ``$`` topics, as in matching [MQTT-4.7.2-1]."""
    if wanted.startswith("$") and granted[:1] in ("+", "#"):
        return False
    g_levels = granted.split("/")
    w_levels = wanted.split("/")
    for i, g in enumerate(g_levels):
        if g == "#":
            return True
        if i >= len(w_levels):
            return False
        w = w_levels[i]
        if w == "#":
            return False
        if g != "+" and (w == "+" or g != w):
            return False
    return len(g_levels) == len(w_levels)


@dataclass
class AccessControl:
    """Rules of a mosquitto ACL file: anonymous rules, per-user rules and patterns."""

    anonymous: list[AclRule] = field(default_factory=list)
    users: dict[str, list[AclRule]] = field(default_factory=dict)
    patterns: list[AclRule] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str, *, path: str | None = None) -> AccessControl:
        acl = cls()
        current: list[AclRule] = acl.anonymous
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            keyword, *more = line.split(None, 1)
            rest = more[0].strip() if more else ""
            if keyword == "user":
                if not rest:
                    raise ConfigError(f"line {n}: 'user' needs a name", path=path)
                current = acl.users.setdefault(rest, [])
                continue
            if keyword not in ("topic", "pattern"):
                raise ConfigError(f"line {n}: unknown keyword {keyword!r}", path=path)
            access, *after = rest.split(None, 1) if rest else ("",)
            if access in ("read", "write", "readwrite", "deny"):
                topic = after[0].strip() if after else ""
            else:
                access, topic = "readwrite", rest
            if not topic:
                raise ConfigError(f"line {n}: no topic", path=path)
            rule = AclRule(access, topic, keyword == "pattern")
            (acl.patterns if rule.pattern else current).append(rule)
        return acl

    @classmethod
    def load(cls, path: str | Path) -> AccessControl:
        try:
            return cls.parse(Path(path).read_text(encoding="utf-8"), path=str(path))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(str(exc), path=str(path)) from None

    def allowed(self, access: str, topic: str, *, client_id: str, username: str | None,
                subscribe: bool = False) -> bool:
        """Whether ``access`` (read/write) to ``topic`` (a filter when ``subscribe``) is granted."""
        rules = list(self.users.get(username, ())) if username is not None else \
            list(self.anonymous)
        for p in self.patterns:
            if "%u" in p.topic and username is None:
                continue
            topic_of = p.topic.replace("%c", client_id).replace("%u", username or "")
            rules.append(AclRule(p.access, topic_of))
        match = _filter_within if subscribe else topic_matches
        granted = False
        for rule in rules:
            if rule.access == "deny":
                if match(rule.topic, topic):
                    return False
            elif not granted and (rule.access == "readwrite" or rule.access == access):
                granted = match(rule.topic, topic)
        return granted


@dataclass
class Authenticator:
    """Connection and topic checks for the broker engine."""

    allow_anonymous: bool = False
    passwords: PasswordFile | None = None
    acl: AccessControl | None = None

    def authenticate(self, username: str | None, password: bytes | None) -> int:
        """0 when allowed; else 4 (bad user name or password) or 5 (not authorized)."""
        if username is None:
            return 0 if self.allow_anonymous else 5
        if self.passwords is None:
            return 0 if self.allow_anonymous else 5
        return 0 if self.passwords.check(username, password) else 4

    def may(self, access: str, topic: str, *, client_id: str, username: str | None,
            subscribe: bool = False) -> bool:
        if self.acl is None:
            return True
        return self.acl.allowed(access, topic, client_id=client_id, username=username,
                                subscribe=subscribe)
