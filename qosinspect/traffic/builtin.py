"""The built-in scenarios, by name (``qosinspect generate seed``).

Each is plain data run through the same parser as a TOML file, so a built-in can never hold a
value a file could not; ``scenarios/<name>.toml`` holds the same scenario written out, with
comments (a test keeps the two equal).

- ``seed``: the embedded team's stream: ten topics at 10 Hz per QoS level (a publisher per
  level, 300 messages/s in all) to one subscriber; ``seed-qos0``/``-qos1``/``-qos2`` one level.
- ``reconnect``: the seed stream to a persistent subscriber whose acknowledgements stall for half
  a second and whose connection is then cut (RST) and refused for three seconds: QoS 0 messages
  are lost during the outage, QoS 1 ones that were delivered but not acknowledged come again
  (duplicates), QoS 2 ones arrive exactly once. A clean-session subscriber watches undisturbed.
- ``burst``: five publishers sending bursts of 100 QoS 1 messages every two seconds.
- ``slow-subscriber``: 150 messages/s at QoS 1 and 2 to a subscriber that handles 100/s (each
  acknowledgement waits until its message is processed) beside a fast one.
- ``flaky-acks``: acknowledgements dropped and duplicated in both directions, then both clients
  cut (FIN) so the broker and the publisher resend what was never acknowledged.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .scenario import Scenario, parse_scenario

__all__ = ["BUILTIN_NAMES", "builtin_data", "builtin_scenario", "resolve_scenario"]


def _seed_publishers(levels: tuple[int, ...], *, count: int = 10, rate: float = 10.0
                     ) -> list[dict[str, Any]]:
    return [{"name": f"pub-q{q}", "keep_alive": 30,
             "topics": [{"topic": f"seed/qos{q}/sensor{{i}}", "count": count, "qos": q,
                         "rate": rate, "payload_size": 64}]} for q in levels]


def _seed(levels: tuple[int, ...]) -> dict[str, Any]:
    label = ", ".join(str(q) for q in levels)
    return {
        "name": "seed" if len(levels) == 3 else f"seed-qos{levels[0]}",
        "description": f"ten topics at 10 Hz at QoS {label} to one subscriber",
        "duration": 10.0,
        "publishers": _seed_publishers(levels),
        "subscribers": [{"name": "sub", "filters": ["seed/#"], "qos": 2, "keep_alive": 30}],
    }


_DATA: dict[str, dict[str, Any]] = {
    "seed": _seed((0, 1, 2)),
    "seed-qos0": _seed((0,)),
    "seed-qos1": _seed((1,)),
    "seed-qos2": _seed((2,)),
    "reconnect": {
        "name": "reconnect",
        "description": "seed traffic at QoS 0, 1 and 2; the persistent subscriber's acks stall, "
                       "its connection is cut and refused for 3 s, then it resumes its session",
        "duration": 10.0,
        "publishers": _seed_publishers((0, 1, 2)),
        "subscribers": [
            {"name": "sub-persistent", "filters": ["seed/#"], "qos": 2, "clean_start": False,
             "session_expiry": 3600, "keep_alive": 30},
            {"name": "sub-steady", "filters": ["seed/#"], "qos": 2, "keep_alive": 30},
        ],
        "faults": [
            {"kind": "hold_acks", "client": "sub-persistent", "at": 4.0, "duration": 1.0,
             "direction": "c2b"},
            {"kind": "cut", "client": "sub-persistent", "at": 4.5, "how": "rst",
             "down_for": 3.0},
        ],
    },
    "burst": {
        "name": "burst",
        "description": "five publishers, each a burst of 100 QoS 1 messages every 2 s",
        "duration": 8.0,
        "publishers": [{"name": "burster", "count": 5, "topics": [
            {"topic": "burst/{client}/t{i}", "count": 2, "qos": 1, "rate": 0.5,
             "arrival": "burst", "burst_size": 50, "payload_size": 256}]}],
        "subscribers": [{"name": "sub", "filters": ["burst/#"], "qos": 1}],
    },
    "slow-subscriber": {
        "name": "slow-subscriber",
        "description": "150 msg/s at QoS 1 and 2 to a subscriber that processes 100 msg/s, "
                       "beside a fast one",
        "duration": 5.0,
        "drain": 15.0,
        "publishers": [{"name": "pub", "topics": [
            {"topic": "slow/qos1/t{i}", "count": 5, "qos": 1, "rate": 15.0},
            {"topic": "slow/qos2/t{i}", "count": 5, "qos": 2, "rate": 15.0}]}],
        "subscribers": [
            {"name": "sub-slow", "filters": ["slow/#"], "qos": 2, "process_delay": 0.01},
            {"name": "sub-fast", "filters": ["slow/#"], "qos": 2},
        ],
    },
    "flaky-acks": {
        "name": "flaky-acks",
        "description": "acknowledgements dropped and duplicated both ways, then both clients "
                       "cut so what was never acknowledged is resent",
        "duration": 6.0,
        "publishers": [{"name": "pub", "clean_start": False, "session_expiry": 3600,
                        "topics": [
                            {"topic": "flaky/qos1/t{i}", "count": 2, "qos": 1, "rate": 5.0},
                            {"topic": "flaky/qos2/t{i}", "count": 2, "qos": 2, "rate": 5.0}]}],
        "subscribers": [{"name": "sub", "filters": ["flaky/#"], "qos": 2, "clean_start": False,
                         "session_expiry": 3600}],
        "faults": [
            {"kind": "drop", "client": "sub", "packet_type": "PUBACK", "direction": "c2b",
             "at": 1.0, "every": 4, "count": 3},
            {"kind": "drop", "client": "sub", "packet_type": "PUBCOMP", "direction": "c2b",
             "at": 1.0, "every": 4, "count": 3},
            {"kind": "duplicate", "client": "sub", "packet_type": "PUBREC", "direction": "c2b",
             "at": 1.0, "every": 5, "count": 3},
            {"kind": "drop", "client": "pub", "packet_type": "PUBCOMP", "direction": "b2c",
             "at": 1.5, "every": 3, "count": 2},
            {"kind": "duplicate", "client": "pub", "packet_type": "PUBACK", "direction": "b2c",
             "at": 1.5, "every": 3, "count": 2},
            {"kind": "cut", "clients": ["sub", "pub"], "at": 4.0, "how": "fin",
             "down_for": 0.5},
        ],
    },
}

BUILTIN_NAMES = tuple(_DATA)


def builtin_data(name: str) -> dict[str, Any]:
    """The raw data of a built-in scenario (a fresh copy)."""
    import copy

    if name not in _DATA:
        raise ConfigError(f"no built-in scenario named {name!r} (built-in: "
                          f"{', '.join(BUILTIN_NAMES)}; or give a .toml file)")
    return copy.deepcopy(_DATA[name])


def builtin_scenario(name: str) -> Scenario:
    return parse_scenario(builtin_data(name), path=f"<built-in {name}>", default_name=name)


def resolve_scenario(name_or_path: str, overrides: dict[str, Any] | None = None) -> Scenario:
    """A built-in name or a TOML file, with top-level ``overrides`` applied before checking
    (so an override that clashes with the scenario is reported like a wrong field).

    ``overrides`` keys are top-level scenario keys, plus ``broker_address`` (an external
    ``host:port``, which makes the broker external).
    """
    if name_or_path in _DATA:
        data, path, stem = builtin_data(name_or_path), f"<built-in {name_or_path}>", name_or_path
    else:
        p = Path(name_or_path)
        if not p.exists() and p.suffix != ".toml":
            raise ConfigError(f"no built-in scenario named {name_or_path!r} and no such file "
                              f"(built-in: {', '.join(BUILTIN_NAMES)})")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the scenario file: {exc}", path=str(p)) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", path=str(p)) from None
        path, stem = str(p), p.stem
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "broker_address":
            broker = dict(data.get("broker") or {})
            broker.pop("port", None)
            broker.update(kind="external", address=value)
            data["broker"] = broker
        else:
            data[key] = value
    return parse_scenario(data, path=path, default_name=stem)
