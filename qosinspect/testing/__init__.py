"""Helpers for tests: synthetic captures (:mod:`.synthcap`)."""

__all__: list[str] = []
