"""The traffic generator: scenarios, the fault proxy, live capture, runs, replay.

An asyncio driver layer (like ``broker/`` and ``client/``): it starts the built-in broker or
talks to an external one, runs the scenario's clients through a fault proxy, records what it
did (the ground truth) and captures the traffic, so the analysis can be checked against it.
Nothing heavy is imported here; import the submodules.
"""

from __future__ import annotations

__all__: list[str] = []
