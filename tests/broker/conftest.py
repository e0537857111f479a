"""Fixtures of the broker tests: a throwaway certificate authority made with the openssl CLI
(:mod:`qosinspect.testing.certs`), once per session."""

from __future__ import annotations

import pytest

from qosinspect.testing.certs import Certs, make_certs


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA, a server certificate for 127.0.0.1/::1/localhost and a client certificate (CN
    alice)."""
    return make_certs(tmp_path_factory.mktemp("certs"))
