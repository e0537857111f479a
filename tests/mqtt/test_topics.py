"""Topic names, topic filters, matching and shared subscriptions (MQTT 5.0 4.7 and 4.8; 3.1.1
4.7), with the specification's own examples."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qosinspect.errors import TopicFilterInvalid, TopicNameInvalid
from qosinspect.mqtt import parse_shared, topic_matches, validate_topic_filter, validate_topic_name
from qosinspect.mqtt.topics import SharedSubscription, is_wildcard_filter

from ._strategies import topic_names


@pytest.mark.parametrize("name", ["a", "/", "a/b", "/finance", "sport/tennis/player1",
                                  "sport/tennis/player1/ranking", "$SYS/monitor/Clients",
                                  " ", "a//b", "caf\u00e9", "\U0001f600", "a" * 65535])
def test_valid_topic_names(name: str) -> None:
    validate_topic_name(name)


@pytest.mark.parametrize(("name", "why"), [
    ("", "[MQTT-4.7.3-1]"), ("a/+", "[MQTT-3.3.2-2]"), ("#", "[MQTT-3.3.2-2]"),
    ("a/#", "[MQTT-3.3.2-2]"), ("a+b", "[MQTT-3.3.2-2]"), ("a\x00b", "[MQTT-4.7.3-2]"),
])
def test_invalid_topic_names(name: str, why: str) -> None:
    with pytest.raises(TopicNameInvalid) as info:
        validate_topic_name(name)
    assert why in str(info.value) and info.value.reason_code == 0x90


def test_empty_topic_name_allowed_only_when_asked() -> None:
    validate_topic_name("", allow_empty=True)  # MQTT 5 PUBLISH with a Topic Alias


@pytest.mark.parametrize("topic_filter", [
    # MQTT 5.0 4.7.1.2 and 4.7.1.3 examples
    "sport/tennis/player1/#", "sport/#", "#", "+", "+/tennis/#", "sport/+/player1", "/+",
    "+/+", "sport/tennis/#", "$SYS/#", "+/monitor/Clients", "a//+", "$share/group/a/b",
    "$share/g/#", "$share/g/+/x", "$share", "$sharex/g/a",
])
def test_valid_topic_filters(topic_filter: str) -> None:
    validate_topic_filter(topic_filter)


@pytest.mark.parametrize(("topic_filter", "why"), [
    ("", "[MQTT-4.7.3-1]"),
    ("sport/tennis#", "[MQTT-4.7.1-1]"),      # '#' not a whole level (4.7.1.2 example)
    ("sport/tennis/#/ranking", "[MQTT-4.7.1-1]"),  # '#' not last (4.7.1.2 example)
    ("sport+", "[MQTT-4.7.1-2]"),             # '+' not a whole level (4.7.1.3 example)
    ("a/b+/c", "[MQTT-4.7.1-2]"),
    ("##", "[MQTT-4.7.1-1]"),
    ("a\x00", "[MQTT-4.7.3-2]"),
    ("$share/", "[MQTT-4.8.2-2]"),
    ("$share//a", "[MQTT-4.8.2-2]"),
    ("$share/g+/a", "[MQTT-4.8.2-2]"),
    ("$share/#/a", "[MQTT-4.8.2-2]"),
    ("$share/g", "[MQTT-4.8.2-1]"),
    ("$share/g/", "[MQTT-4.8.2-1]"),
    ("$share/g/a#", "[MQTT-4.7.1-1]"),
])
def test_invalid_topic_filters(topic_filter: str, why: str) -> None:
    with pytest.raises(TopicFilterInvalid) as info:
        validate_topic_filter(topic_filter)
    assert why in str(info.value) and info.value.reason_code == 0x8F


def test_shared_subscriptions() -> None:
    assert parse_shared("$share/consumer1/sport/tennis/+") == SharedSubscription(
        "consumer1", "sport/tennis/+")  # MQTT 5.0 4.8.2 example
    assert parse_shared("$share/g/#") == ("g", "#")
    assert parse_shared("sport/#") is None
    assert parse_shared("$SHARE/g/x") is None  # topic names are case sensitive (4.7.3)


@pytest.mark.parametrize(("topic_filter", "name", "matches"), [
    # 4.7.1.2: "sport/tennis/player1/#" matches these ...
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    # ... and "sport/#" also matches the singular "sport", '#' includes the parent level.
    ("sport/#", "sport", True),
    ("#", "sport/tennis", True),
    ("#", "/", True),
    # 4.7.1.3: "sport/tennis/+" matches "sport/tennis/player1", not ".../player1/ranking"
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player2", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("+", "", True),
    ("+/tennis/#", "sport/tennis/player1", True),
    ("sport/+/player1", "sport/tennis/player1", True),
    ("sport/+/player1", "sport/tennis/player2", False),
    # exact filters, case sensitivity, empty levels (4.7.3)
    ("a/b", "a/b", True), ("a/b", "A/b", False), ("a/b", "a/b/", False), ("a//b", "a//b", True),
    ("a/+/b", "a//b", True),
    # [MQTT-4.7.2-1]: a filter starting with a wildcard does not match a topic starting with $
    ("#", "$SYS/monitor/Clients", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("+", "$SYS", False),
    ("a/#", "a/$SYS", True),  # only a *leading* wildcard is barred from '$' topics
])
def test_matching(topic_filter: str, name: str, matches: bool) -> None:
    assert topic_matches(topic_filter, name) is matches


def test_is_wildcard_filter() -> None:
    assert is_wildcard_filter("a/+") and is_wildcard_filter("#")
    assert not is_wildcard_filter("a/b") and not is_wildcard_filter("$SYS/x")


@settings(max_examples=200, deadline=None)
@given(name=topic_names)
def test_every_name_matches_itself_hash_and_its_plus_pattern(name: str) -> None:
    validate_topic_name(name)
    if not name.startswith("$share/"):  # as a filter that would be a shared subscription
        validate_topic_filter(name)  # a valid name is a valid filter without wildcards
    assert topic_matches(name, name)
    levels = name.split("/")
    plus = "/".join("+" for _ in levels)
    dollar = name.startswith("$")
    assert topic_matches(plus, name) is not dollar
    assert topic_matches("#", name) is not dollar
    assert topic_matches(levels[0] + "/#", name)
    assert not topic_matches(plus + "/+", name)


@settings(max_examples=200, deadline=None)
@given(levels=st.lists(st.sampled_from(["a", "b", "+"]), min_size=1, max_size=4),
       name=st.lists(st.sampled_from(["a", "b", ""]), min_size=1, max_size=5))
def test_matching_agrees_with_a_level_by_level_reading(levels: list[str],
                                                       name: list[str]) -> None:
    topic_filter = "/".join(levels)
    expected = len(levels) == len(name) and all(f in ("+", n) for f, n in zip(levels, name,
                                                                               strict=True))
    assert topic_matches(topic_filter, "/".join(name)) is expected
