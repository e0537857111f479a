"""Loading the codec's test vectors (tests/vectors/) for the tests in this folder.

Two families:

* ``tests/vectors/spec/*.json``: written by hand from the MQTT 3.1 / 3.1.1 / 5.0 specifications.
  Each entry is a packet (``"packet"``, in the JSON form of :mod:`qosinspect.mqtt.jsonform`) or an
  expected error (``"error": {"class", "reason_code", "offset"}``), with its bytes as ``"hex"``: a
  string or a list of annotated lines. In those lines ``#`` starts a comment, ``'text'`` stands for
  its UTF-8 bytes, ``HH*N`` for the byte HH repeated N times, spaces are ignored::

      "hex": ["10 0e             # CONNECT, remaining length 14",
              "0004 'MQTT' 04    # protocol name and level",
              ...]

  ``"canonical": false`` marks bytes that decode to the packet but are not what ``encode`` writes
  (``"why"`` says why); such vectors are checked one way only. In an expected packet,
  ``{"hex": "ab", "repeat": N}`` stands for N bytes 0xab. ``"max_packet_size"`` passes a
  configured limit to the decoder.
* ``tests/vectors/peers/*.json`` and ``tests/vectors/shared/*.json``: bytes real peers sent, taken
  from captures with tshark as the oracle (see tests/vectors/make_peer_vectors.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qosinspect.mqtt import Packet
from qosinspect.mqtt.jsonform import packet_from_dict

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
SPEC = VECTORS / "spec"


def parse_hex(text: str | list[str]) -> bytes:
    """The bytes of an annotated hex string or list of lines (see the module docstring)."""
    lines = [text] if isinstance(text, str) else text
    out = bytearray()
    for line in lines:
        i = 0
        n = len(line)
        digits = ""
        while i < n:
            ch = line[i]
            if ch == "#":
                break
            if ch == "'":
                stop = line.index("'", i + 1)
                if digits:
                    raise ValueError(f"odd hex digits before a quote in {line!r}")
                out += line[i + 1:stop].encode("utf-8")
                i = stop + 1
                continue
            if ch == "*":
                j = i + 1
                while j < n and line[j].isdigit():
                    j += 1
                if not out or digits or j == i + 1:
                    raise ValueError(f"bad repeat in {line!r}")
                out += bytes([out[-1]]) * (int(line[i + 1:j]) - 1)
                i = j
                continue
            if ch.isspace() or ch == "|":
                if len(digits) % 2:
                    raise ValueError(f"odd number of hex digits in {line!r}")
                out += bytes.fromhex(digits)
                digits = ""
                i += 1
                continue
            digits += ch
            if len(digits) == 2:
                out += bytes.fromhex(digits)
                digits = ""
            i += 1
        if digits:
            raise ValueError(f"odd number of hex digits in {line!r}")
    return bytes(out)


@dataclass(frozen=True)
class SpecVector:
    """One hand-written vector: bytes and either the packet or the error they must give."""

    name: str
    file: str
    version: int
    data: bytes
    packet: Packet | None = None
    error: dict[str, Any] | None = None
    canonical: bool = True
    max_packet_size: int | None = None
    cite: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def id(self) -> str:
        return f"{self.file}:{self.name}"


def _expand(obj: Any) -> Any:
    """``{"hex": "ab", "repeat": N}`` -> ``{"hex": "abab..."}`` anywhere in an expected packet."""
    if isinstance(obj, dict):
        if "repeat" in obj and "hex" in obj:
            return {"hex": obj["hex"] * obj["repeat"]}
        return {k: _expand(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_expand(v) for v in obj]
    return obj


def load_spec(pattern: str = "*.json") -> list[SpecVector]:
    """The spec vectors of every file matching ``pattern`` in tests/vectors/spec/."""
    vectors: list[SpecVector] = []
    files = sorted(SPEC.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no vector files {pattern} in {SPEC}")
    for path in files:
        for entry in json.loads(path.read_text(encoding="utf-8")):
            packet = packet_from_dict(_expand(entry["packet"])) if "packet" in entry else None
            vectors.append(SpecVector(
                name=entry["name"], file=path.stem, version=entry["version"],
                data=parse_hex(entry["hex"]), packet=packet, error=entry.get("error"),
                canonical=entry.get("canonical", True),
                max_packet_size=entry.get("max_packet_size"), cite=entry.get("cite", ""),
                raw=entry))
    return vectors


def spec_packets() -> list[SpecVector]:
    return [v for v in load_spec() if v.packet is not None]


def spec_errors() -> list[SpecVector]:
    return [v for v in load_spec() if v.error is not None]


def load_peer_vectors(folder: str) -> list[dict[str, Any]]:
    """Every vector of tests/vectors/<folder>/*.json, each with its file stem as ``"file"``."""
    out: list[dict[str, Any]] = []
    for path in sorted((VECTORS / folder).glob("*.json")):
        for entry in json.loads(path.read_text(encoding="utf-8")):
            out.append({**entry, "file": path.stem})
    return out
