"""Which subscriptions a topic name matches: a topic-level trie with a per-topic cache.

A broker looks up the subscriptions of every message it routes, so this is the hot path of
fan-out. Filters are stored level by level in a trie (``+`` and ``#`` are children like any
other level); a topic name walks it once, following its own level, ``+`` and ``#`` at each
step, so the cost depends on the depth of the name, not on the number of filters. The list of
trie nodes a name reaches is cached per name (most brokers see the same few topics again and
again) and the cache is dropped whenever a node is added or pruned; adding a subscriber to an
existing node does not change which nodes match, so it keeps the cache.

Matching rules (MQTT 5.0 section 4.7):

- ``#`` matches the parent level and any number of levels below it (``sport/#`` matches
  ``sport``) [MQTT-4.7.1-1]; ``+`` matches exactly one level [MQTT-4.7.1-2];
- a filter starting with a wildcard does not match a name starting with ``$``
  [MQTT-4.7.2-1];
- shared subscriptions ``$share/{group}/{filter}`` are kept per (group, filter) on the node of
  their filter; the engine picks one member of each matching group per message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ..mqtt.topics import parse_shared

__all__ = ["SubscriptionIndex", "TrieNode"]

V = TypeVar("V")
_CACHE_MAX = 8192


@dataclass(eq=False, slots=True)
class TrieNode(Generic[V]):
    """One level of the trie: ordinary subscribers and shared groups whose filter ends here."""

    children: dict[str, TrieNode[V]] = field(default_factory=dict)
    subs: dict[str, V] = field(default_factory=dict)
    shared: dict[str, dict[str, V]] = field(default_factory=dict)

    def empty(self) -> bool:
        return not (self.children or self.subs or self.shared)


class SubscriptionIndex(Generic[V]):
    """Subscriptions by filter, for client ids; ``V`` is what the engine stores (its options)."""

    def __init__(self) -> None:
        self.root: TrieNode[V] = TrieNode()
        self._cache: dict[str, tuple[TrieNode[V], ...]] = {}

    def add(self, client_id: str, topic_filter: str, value: V) -> None:
        """Add or replace the subscription of ``client_id`` to ``topic_filter``."""
        shared = parse_shared(topic_filter)
        node = self._node(shared.topic_filter if shared else topic_filter, create=True)
        assert node is not None
        if shared is None:
            node.subs[client_id] = value
        else:
            node.shared.setdefault(shared.share_name, {})[client_id] = value

    def remove(self, client_id: str, topic_filter: str) -> bool:
        """Remove one subscription; False when there was none. Prunes empty nodes."""
        shared = parse_shared(topic_filter)
        levels = (shared.topic_filter if shared else topic_filter).split("/")
        path: list[tuple[TrieNode[V], str]] = []
        node = self.root
        for level in levels:
            child = node.children.get(level)
            if child is None:
                return False
            path.append((node, level))
            node = child
        if shared is None:
            found = node.subs.pop(client_id, None) is not None
        else:
            members = node.shared.get(shared.share_name)
            found = members is not None and members.pop(client_id, None) is not None
            if members is not None and not members:
                del node.shared[shared.share_name]
        while path and node.empty():
            parent, level = path.pop()
            del parent.children[level]
            self._cache.clear()
            node = parent
        return found

    def match(self, topic: str) -> tuple[TrieNode[V], ...]:
        """The nodes whose filters match ``topic``; each appears once."""
        hit = self._cache.get(topic)
        if hit is not None:
            return hit
        out: list[TrieNode[V]] = []
        nodes = [self.root]
        dollar = topic.startswith("$")
        for depth, level in enumerate(topic.split("/")):
            nxt: list[TrieNode[V]] = []
            wild = not (dollar and depth == 0)        # [MQTT-4.7.2-1]
            for node in nodes:
                children = node.children
                if wild:
                    multi = children.get("#")
                    if multi is not None:
                        out.append(multi)
                    single = children.get("+")
                    if single is not None:
                        nxt.append(single)
                exact = children.get(level)
                if exact is not None:
                    nxt.append(exact)
            nodes = nxt
            if not nodes:
                break
        for node in nodes:
            out.append(node)
            multi = node.children.get("#")            # "a/#" matches "a" too
            if multi is not None:
                out.append(multi)
        result = tuple(out)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[topic] = result
        return result

    def _node(self, topic_filter: str, *, create: bool) -> TrieNode[V] | None:
        node = self.root
        for level in topic_filter.split("/"):
            child = node.children.get(level)
            if child is None:
                if not create:
                    return None
                child = node.children[level] = TrieNode()
                self._cache.clear()
            node = child
        return node
