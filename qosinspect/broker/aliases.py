"""Topic aliases the broker sets on the PUBLISH packets it sends to an MQTT 5 client.

A client that announces a Topic Alias Maximum above 0 in CONNECT lets the server replace a topic
name it has sent before by a two-byte number (MQTT 5.0 3.3.2.3.4): the first PUBLISH on a topic
carries the name and the alias it sets, later ones an empty name and the alias. On a busy topic
with a long name that saves most of the header. The broker keeps one :class:`TopicAliases` per
connection (aliases never outlive a connection [MQTT-3.3.2-7]), bounded by the client's maximum
[MQTT-3.3.2-8] and by ``BrokerConfig.outgoing_topic_aliases``; when all are taken the least
recently used topic gives its number up to the new one (the PUBLISH that reuses a number always
carries the new name, so the client rebinds it).
"""

from __future__ import annotations

from collections import OrderedDict

from ..mqtt.packets import Publish
from ..mqtt.properties import Properties, PropertyId

__all__ = ["TopicAliases"]

_ALIAS = int(PropertyId.TOPIC_ALIAS)


class TopicAliases:
    """A least-recently-used map of topic names to alias numbers 1..``maximum``."""

    __slots__ = ("_by_topic", "maximum")

    def __init__(self, maximum: int) -> None:
        if maximum < 1:
            raise ValueError("a topic alias map needs a maximum of at least 1")
        self.maximum = maximum
        self._by_topic: OrderedDict[str, int] = OrderedDict()

    def apply(self, p: Publish) -> Publish:
        """``p`` as sent on this connection: the topic replaced by its alias once it has one."""
        topic = p.topic
        by_topic = self._by_topic
        alias = by_topic.get(topic)
        props = p.properties
        if alias is not None:
            by_topic.move_to_end(topic)
            return p._replace(topic="", properties=Properties((*props.items, (_ALIAS, alias))))
        if len(by_topic) < self.maximum:
            alias = len(by_topic) + 1
        else:
            _, alias = by_topic.popitem(last=False)      # the least recently used gives way
        by_topic[topic] = alias
        return p._replace(properties=Properties((*props.items, (_ALIAS, alias))))
