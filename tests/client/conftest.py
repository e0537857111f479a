"""Fixtures of the client tests: one mosquitto (TCP and WebSocket listeners on free ports) for
the whole session, stopped and its temporary directory removed at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qosinspect.testing.certs import Certs, make_certs
from qosinspect.testing.mosquitto import Mosquitto


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[Mosquitto]:
    with Mosquitto(websocket=True).running() as broker:
        yield broker


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Certs]:
    directory: Path = tmp_path_factory.mktemp("certs")
    yield make_certs(directory)
