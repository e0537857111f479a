"""Say why: the causes behind slow handshakes, disconnects and losses (issue 16).

One small module per cause (:mod:`.nagle`, :mod:`.zero_window`, :mod:`.retransmission`,
:mod:`.keepalive`), each a ``check`` that reads the wire facts (:mod:`.facts`) around one
exchange or reconnection and returns a :class:`~.evidence.Diagnosis` (the stable cause id, the
frames, the sentence of the signature that decided and the advice) or nothing;
:mod:`.registry` orders them; :mod:`.core`'s :class:`Diagnoser` chooses what to explain and
collects the verdicts. :mod:`.delivery` holds the causes seen only at the delivery level (a
copy the broker held back: ``offline_queue_flush``, ``receive_maximum``; a copy never
delivered). When nothing fits, an outlier is ``no_known_cause``: said, not guessed. The
signatures and thresholds are in docs/diagnoses.md.
"""

from __future__ import annotations

from .core import DEFAULT_FLOOR_NS, DEFAULT_PERCENTILE, Diagnoser, DiagnosisResult
from .evidence import CAUSES, NO_KNOWN_CAUSE, Diagnosis

__all__ = ["CAUSES", "DEFAULT_FLOOR_NS", "DEFAULT_PERCENTILE", "NO_KNOWN_CAUSE", "Diagnoser",
           "Diagnosis", "DiagnosisResult"]
