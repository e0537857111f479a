"""Drivers that run another program to produce the boundary events of :mod:`qosinspect.events`.

Why a package of its own: :mod:`qosinspect.capture` is pure parsing (standard library, no
subprocess), as the architecture asks of that layer. Wireshark's dissector, run as a ``tshark``
subprocess, is a second source of the same events (:mod:`.tshark`), and :mod:`.engines` picks the
native decoder or tshark for a capture file. The arrows point down only: ``drivers`` imports
``capture`` (the summary type, the CONNECT probe, the file-format check), never the reverse, and
the analysis reaches a driver only through :func:`.engines.iter_capture_events`.
"""

from .engines import ENGINES, iter_capture_events

__all__ = ["ENGINES", "iter_capture_events"]
