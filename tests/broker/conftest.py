"""Fixtures of the broker tests: a throwaway certificate authority made with the openssl CLI."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from qosinspect.testing.tools import require_tool


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_crt: Path
    server_key: Path
    client_crt: Path        # CN=alice, signed by the CA
    client_key: Path


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA, a server certificate for 127.0.0.1/::1/localhost and a client certificate."""
    openssl = require_tool("openssl")
    d = tmp_path_factory.mktemp("certs")
    _run(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
         "-out", "ca.crt", "-days", "2", "-subj", "/CN=qosinspect test CA", cwd=d)
    (d / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n", encoding="ascii")
    for name, cn, ext in (("server", "localhost", ["-extfile", "server.ext"]),
                          ("client", "alice", [])):
        _run(openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
        _run(openssl, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey",
             "ca.key", "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", *ext, cwd=d)
    return Certs(d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt",
                 d / "client.key")
