"""A one-line progress bar on a terminal's stderr, for commands that stream a long capture."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO

__all__ = ["Progress"]


class Progress:
    """Drawn once a run takes over ``delay`` seconds (a short run stays quiet), redrawn every
    quarter second at most; ``position()`` gives (bytes done, bytes in all)."""

    def __init__(self, stream: IO[str], position: Callable[[], tuple[int, int]], *,
                 delay: float = 1.0, unit: str = "events") -> None:
        self.stream = stream
        self.unit = unit
        self.position = position
        self.start = time.monotonic()
        self.shown = False
        self.next = self.start + delay

    def _due(self) -> bool:
        """Whether a redraw is due (after ``delay``, then every quarter second at most)."""
        now = time.monotonic()
        if now < self.next:
            return False
        self.next = now + 0.25
        return True

    def tick(self, frames: int) -> None:
        if self._due():
            self.draw(frames, *self.position())

    def update(self, events: int, done: int, total: int) -> None:
        """A progress report that brings its own position (the analysis' callback)."""
        if self._due():
            self.draw(events, done, total)

    def draw(self, frames: int, done: int, total: int) -> None:
        now = time.monotonic()
        frac = done / total if total else 0.0
        bar = "#" * int(frac * 30)
        self.stream.write(f"\r[{bar:<30}] {frac:6.1%} {frames:,} {self.unit} "
                          f"{now - self.start:5.1f} s")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * 72 + "\r")
            self.stream.flush()
