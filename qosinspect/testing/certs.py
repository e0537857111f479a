"""Throwaway TLS certificates for tests, made with the openssl command.

One certificate authority signs a server certificate (CN localhost, valid for 127.0.0.1, ::1 and
localhost) and a client certificate (CN alice: a broker that takes the certificate's identity as
the user name sees "alice"). EC P-256 keys (quick to make), valid one day.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from .tools import require_tool

__all__ = ["CLIENT_CN", "Certs", "make_certs"]

#: The common name of the client certificate.
CLIENT_CN = "alice"


@dataclass(frozen=True)
class Certs:
    """Where the files are: PEM certificates and unencrypted PEM keys."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certs(directory: Path) -> Certs:
    """Write a CA, a server and a client certificate into ``directory`` (see the module)."""
    openssl = require_tool("openssl")

    def sh(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60,
                       cwd=directory)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    sh("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
       "-subj", "/CN=qosinspect test CA",
       "-addext", "basicConstraints=critical,CA:TRUE",
       "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, cn, ext in (("server", "localhost",
                           "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost"),
                          ("client", CLIENT_CN, "extendedKeyUsage=clientAuth")):
        sh("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        (directory / f"{name}.ext").write_text(ext + "\n", encoding="ascii")
        sh("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
           "-CAcreateserial", "-out", f"{name}.crt", "-days", "1", "-extfile", f"{name}.ext")
    return Certs(directory / "ca.crt", directory / "server.crt", directory / "server.key",
                 directory / "client.crt", directory / "client.key")
