"""Scenario files: every documented example parses, built-ins equal their TOML twins, and each
kind of mistake gives a ConfigError naming the file and the exact field."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qosinspect.errors import ConfigError
from qosinspect.traffic.builtin import BUILTIN_NAMES, builtin_data, builtin_scenario
from qosinspect.traffic.payload import make_payload, min_payload_size, parse_payload
from qosinspect.traffic.scenario import load_scenario_file, parse_address, parse_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"

MINIMAL = """
duration = 5
[[publishers]]
name = "pub"
[[publishers.topics]]
topic = "demo/t{i}"
count = 3
qos = 1
rate = 10
[[subscribers]]
name = "sub"
filters = ["demo/#"]
"""


def test_every_example_file_parses() -> None:
    files = sorted(SCENARIOS.glob("*.toml"))
    assert len(files) >= 8
    for path in files:
        s = load_scenario_file(path)
        assert s.name and s.all_client_ids(), path


@pytest.mark.parametrize("name", [n for n in BUILTIN_NAMES if (SCENARIOS / f"{n}.toml").exists()])
def test_builtin_equals_its_documented_toml(name: str) -> None:
    from_file = load_scenario_file(SCENARIOS / f"{name}.toml")
    builtin = builtin_scenario(name)
    assert from_file.__dict__ | {"source": ""} == builtin.__dict__ | {"source": ""}


def test_every_builtin_parses_and_seed_has_ten_topics_at_10_hz_per_qos() -> None:
    for name in BUILTIN_NAMES:
        builtin_scenario(name)
    seed = builtin_scenario("seed")
    assert [(t.count, t.rate, t.qos) for g in seed.publishers for t in g.topics] == [
        (10, 10.0, 0), (10, 10.0, 1), (10, 10.0, 2)]
    with pytest.raises(ConfigError, match="no built-in scenario named 'sed'"):
        builtin_data("sed")


def test_minimal_file_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "mini.toml"
    path.write_text(MINIMAL)
    s = load_scenario_file(path)
    assert s.name == "mini" and s.mqtt_version == 4 and s.broker.kind == "builtin"
    assert s.publishers[0].topics[0].topics_for("pub", 0) == ["demo/t0", "demo/t1", "demo/t2"]
    assert s.subscribers[0].filters == (("demo/#", 2),)


BAD = [
    ("duration = -1", "duration", "greater than 0"),
    ("mqtt_version = 6", "mqtt_version", "3 (3.1), 4 (3.1.1) or 5"),
    ("durration = 3", "durration", "did you mean 'duration'"),
    ("[broker]\nkind = 'mosquitto'", "broker.kind", "builtin, external"),
    ("[broker]\nkind = 'external'", "broker.address", "required"),
    ("[broker]\nkind = 'external'\naddress = '10.1.2.3:1883'", "broker.address", "only local"),
    ("[broker]\nkind = 'external'\naddress = 'localhost:99999'", "broker.address", "port"),
    ("[[publishers]]\nname = 'p'\n[[publishers.topics]]\ntopic = 'a'\nqos = 3",
     "publishers[0].topics[0].qos", "at most 2"),
    ("[[publishers]]\nname = 'p'\n[[publishers.topics]]\ntopic = 'a'\nqso = 1",
     "publishers[0].topics[0].qso", "did you mean 'qos'"),
    ("[[publishers]]\nname = 'p'\n[[publishers.topics]]\ntopic = 'a/+'",
     "publishers[0].topics[0].topic", "not a valid topic name"),
    ("[[publishers]]\nname = 'p'\n[[publishers.topics]]\ntopic = 'a/{x}'",
     "publishers[0].topics[0].topic", "bad template"),
    ("[[publishers]]\nname = 'p'\n[[publishers.topics]]\ntopic = 'a'\ncount = 2",
     "publishers[0].topics[0].topic", "must contain {i}"),
    ("[[publishers]]\nname = 'p'\n[[publishers.topics]]\ntopic = 'a'\nrate = 'fast'",
     "publishers[0].topics[0].rate", "must be a number"),
    ("[[publishers]]\nname = 'p'\n[[publishers.topics]]\ntopic = 'a'\npayload_size = 8",
     "publishers[0].topics[0].payload_size", "at least"),
    ("[[publishers]]\nname = 'p'\n[[publishers.topics]]\ntopic = 'a'\ntopic_alias = true",
     "publishers[0].topics[0].topic_alias", "mqtt_version = 5"),
    ("[[publishers]]\nname = 'p'", "publishers[0].topics", "at least one"),
    ("[[publishers]]\nname = 'a/b'\n[[publishers.topics]]\ntopic = 'a'",
     "publishers[0].name", "client id"),
    ("[[subscribers]]\nname = 's'", "subscribers[0].filters", "non-empty list"),
    ("[[subscribers]]\nname = 's'\nfilters = ['a/#/b']", "subscribers[0].filters[0]",
     "not a valid topic filter"),
    ("[[subscribers]]\nname = 's'\nfilters = [{filter = 'a', qos = 5}]",
     "subscribers[0].filters[0].qos", "at most 2"),
    ("[[subscribers]]\nname = 's'\nfilters = ['a']\n[[subscribers]]\nname = 's'\n"
     "filters = ['a']", "subscribers[1].name", "also used"),
    ("[[subscribers]]\nname = 's'\nfilters = ['a']\n[[faults]]\nkind = 'explode'\n"
     "client = 's'", "faults[0].kind", "one of cut"),
    ("[[subscribers]]\nname = 's'\nfilters = ['a']\n[[faults]]\nkind = 'cut'\nclient = 'x'",
     "faults[0].client", "no client or group named 'x'"),
    ("[[subscribers]]\nname = 's'\nfilters = ['a']\n[[faults]]\nkind = 'cut'",
     "faults[0].client", "needs the client"),
    ("[[subscribers]]\nname = 's'\nfilters = ['a']\n[[faults]]\nkind = 'blackhole'\n"
     "client = 's'", "faults[0].duration", "needs a duration"),
    ("[[subscribers]]\nname = 's'\nfilters = ['a']\n[[faults]]\nkind = 'blackhole'\n"
     "client = 's'\nduration = 1\ndelay = 2", "faults[0].delay", "not used by a blackhole"),
    ("[[subscribers]]\nname = 's'\nfilters = ['a']\n[[faults]]\nkind = 'drop'\n"
     "client = 's'", "faults[0].packet_type", "needs the packet type"),
    ("[[subscribers]]\nname = 's'\nfilters = ['a']\n[[faults]]\nkind = 'drop'\n"
     "client = 's'\npacket_type = 'PUBAK'", "faults[0].packet_type", "not an MQTT packet"),
    ("[[subscribers]]\nname = 's'\nfilters = ['a']\n[[faults]]\nkind = 'hold_acks'\n"
     "client = 's'\nduration = 1\npacket_type = 'PUBLISH'", "faults[0].packet_type",
     "only acknowledgements"),
    ("[[subscribers]]\nname = 's'\nfilters = ['a']\n[[faults]]\nkind = 'cut'\n"
     "client = 's'\nhow = 'unplug'", "faults[0].how", "fin, rst"),
    ("[[subscribers]]\nname = 's'\nfilters = ['a']\n[[faults]]\nkind = 'cut'\n"
     "client = 's'\nat = 100", "faults[0].at", "after the end"),
    ("[[subscribers]]\nname = 's'\nfilters = ['a']\n[[faults]]\nkind = 'restart_broker'\n"
     "client = 's'", "faults[0].client", "whole run"),
    ("[broker]\nkind = 'external'\naddress = '127.0.0.1:1883'\n[[subscribers]]\nname = 's'\n"
     "filters = ['a']\n[[faults]]\nkind = 'restart_broker'", "faults[0].kind",
     "only the built-in broker"),
    ("[broker]\nwebsocket = true\n[[subscribers]]\nname = 's'\nfilters = ['a']\n[[faults]]\n"
     "kind = 'drop'\nclient = 's'\npacket_type = 'PUBACK'", "faults[0].kind", "WebSocket"),
    ("[[subscribers]]\nname = 's'\nfilters = ['a']\n[[faults]]\nkind = 'netem'\n",
     "faults[0].loss", "needs loss"),
    ("publishers = 3", "publishers", "array of tables"),
    ("", "publishers", "at least one"),
]


@pytest.mark.parametrize(("text", "field", "message"), BAD)
def test_bad_scenario_names_the_field(tmp_path: Path, text: str, field: str, message: str
                                      ) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("duration = 10\n" + text if not text.startswith("duration") else text)
    if text.startswith("duration") and "publishers" not in text:
        path.write_text(text + "\n" + MINIMAL.replace("duration = 5\n", ""))
    with pytest.raises(ConfigError) as info:
        load_scenario_file(path)
    assert info.value.field == field, str(info.value)
    assert message in str(info.value)
    assert str(info.value).startswith(str(path))


def test_unreadable_and_invalid_toml_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the scenario file"):
        load_scenario_file(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("duration = [1,\n")
    with pytest.raises(ConfigError, match=r"broken\.toml: not valid TOML"):
        load_scenario_file(broken)


def test_parse_address_accepts_only_local_brokers() -> None:
    assert parse_address("127.0.0.1:1883") == ("127.0.0.1", 1883)
    assert parse_address("localhost:18883") == ("127.0.0.1", 18883)
    assert parse_address("[::1]:1883") == ("::1", 1883)
    for bad in ("example.com:1883", "127.0.0.1", "127.0.0.1:0", 1883):
        with pytest.raises(ConfigError):
            parse_address(bad)


def test_faults_expand_groups_to_client_ids() -> None:
    data = tomllib.loads(MINIMAL)
    data["subscribers"][0]["count"] = 3
    data["faults"] = [{"kind": "cut", "client": "sub", "at": 1}]
    s = parse_scenario(data)
    assert s.faults[0].clients == ("sub-0", "sub-1", "sub-2")


@settings(max_examples=60, deadline=None)
@given(fmt=st.sampled_from(["text", "binary"]), extra=st.integers(0, 200),
       pub=st.integers(0, 65535), seq=st.integers(0, 2**32 - 1),
       ts=st.integers(0, 2**63 - 1))
def test_payload_round_trips(fmt: str, extra: int, pub: int, seq: int, ts: int) -> None:
    size = min_payload_size(fmt) + extra
    data = make_payload(fmt, size, pub, seq, ts)
    assert len(data) == size
    info = parse_payload(data)
    assert info is not None and (info.pub, info.seq, info.ts_ns) == (pub, seq, ts)


def test_foreign_payloads_are_not_taken_for_ours() -> None:
    for data in (b"", b"hello", b"seq=x ts=1 pub=2 ", b"QIP1"):
        assert parse_payload(data) is None
