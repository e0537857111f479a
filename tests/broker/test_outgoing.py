"""The broker's fast output encoding gives exactly the general encoder's bytes, a PUBLISH that
carries the broker's own topic alias included (the one property it sets on most MQTT 5 output)."""

from __future__ import annotations

import pytest

from qosinspect.broker.outgoing import encode_out
from qosinspect.mqtt.codec import encode
from qosinspect.mqtt.packets import Publish
from qosinspect.mqtt.properties import NO_PROPERTIES, Properties, PropertyId


@pytest.mark.parametrize("version", [4, 5])
@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("alias", [None, 1, 300, 65535])
def test_fast_publish_equals_the_encoder(version: int, qos: int, alias: int | None) -> None:
    props = (NO_PROPERTIES if alias is None or version < 5
             else Properties(((PropertyId.TOPIC_ALIAS, alias),)))
    for topic in ("", "t", "a/b/c" * 10):
        for payload in (b"", b"x" * 5, b"y" * 200):
            if not topic and props is NO_PROPERTIES:
                continue
            p = Publish(topic, payload, qos, False, qos == 1, 7 if qos else None, props)
            assert encode_out(p, version) == encode(p, version)
