"""Topic names, topic filters, matching and shared subscriptions (MQTT 5.0 section 4.7/4.8).

Rules:
- Names and filters are at least one character long [MQTT-4.7.3-1] and contain no U+0000
  [MQTT-4.7.3-2]; names contain no wildcard [MQTT-4.7.0-1] / [MQTT-3.3.2-2].
- ``#`` stands alone in its level and last [MQTT-4.7.1-1]; ``+`` stands alone in its level
  [MQTT-4.7.1-2].
- A filter starting with a wildcard does not match a name starting with ``$`` [MQTT-4.7.2-1].
- ``$share/{ShareName}/{filter}``: ShareName is non-empty with no ``/``, ``+`` or ``#``
  [MQTT-4.8.2-1] [MQTT-4.8.2-2], and a filter follows.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import TopicFilterInvalid, TopicNameInvalid

__all__ = [
    "SharedSubscription",
    "is_wildcard_filter",
    "parse_shared",
    "topic_matches",
    "validate_topic_filter",
    "validate_topic_name",
]


def validate_topic_name(name: str, *, allow_empty: bool = False) -> None:
    """Raise TopicNameInvalid unless ``name`` may be published to.

    ``allow_empty`` is for MQTT 5 PUBLISH with a Topic Alias, where the name may be zero length.
    """
    if not name:
        if allow_empty:
            return
        raise TopicNameInvalid("topic name is empty [MQTT-4.7.3-1]")
    if "+" in name or "#" in name:
        raise TopicNameInvalid(f"topic name {name!r} contains a wildcard [MQTT-3.3.2-2]")
    if "\x00" in name:
        raise TopicNameInvalid("topic name contains U+0000 [MQTT-4.7.3-2]")


def validate_topic_filter(topic_filter: str) -> None:
    """Raise TopicFilterInvalid unless ``topic_filter`` is a valid (possibly shared) filter."""
    if not topic_filter:
        raise TopicFilterInvalid("topic filter is empty [MQTT-4.7.3-1]")
    if "\x00" in topic_filter:
        raise TopicFilterInvalid("topic filter contains U+0000 [MQTT-4.7.3-2]")
    shared = parse_shared(topic_filter)
    levels = (shared.topic_filter if shared else topic_filter).split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != last):
            raise TopicFilterInvalid(
                f"topic filter {topic_filter!r}: '#' must be a whole, last level [MQTT-4.7.1-1]")
        if "+" in level and level != "+":
            raise TopicFilterInvalid(
                f"topic filter {topic_filter!r}: '+' must be a whole level [MQTT-4.7.1-2]")


def is_wildcard_filter(topic_filter: str) -> bool:
    return "+" in topic_filter or "#" in topic_filter


class SharedSubscription(NamedTuple):
    share_name: str
    topic_filter: str


def parse_shared(topic_filter: str) -> SharedSubscription | None:
    """``$share/group/filter`` -> (group, filter); None for an ordinary filter."""
    if not topic_filter.startswith("$share/"):
        return None
    rest = topic_filter[len("$share/"):]
    share_name, sep, inner = rest.partition("/")
    if not share_name or "+" in share_name or "#" in share_name:
        raise TopicFilterInvalid(
            f"shared subscription {topic_filter!r}: invalid share name [MQTT-4.8.2-2]")
    if not sep or not inner:
        raise TopicFilterInvalid(
            f"shared subscription {topic_filter!r}: no topic filter after the share name "
            "[MQTT-4.8.2-1]")
    return SharedSubscription(share_name, inner)


def topic_matches(topic_filter: str, name: str) -> bool:
    """Whether a (non-shared) filter matches a topic name.

    ``sport/#`` matches ``sport`` too (4.7.1.2); wildcards at the start never match ``$`` topics.
    """
    if name.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    if "+" not in topic_filter and "#" not in topic_filter:
        return topic_filter == name
    f_levels = topic_filter.split("/")
    n_levels = name.split("/")
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= len(n_levels):
            return False
        if f != "+" and f != n_levels[i]:
            return False
    return len(f_levels) == len(n_levels)
