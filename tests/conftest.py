"""Shared test configuration.

The helpers tests need (``require_tool``, ``shared_captures``) live in
:mod:`qosinspect.testing.tools`, so every test folder imports them the same way; this file only
keeps the suite's global settings.
"""

from __future__ import annotations

import matplotlib

# Plots in tests render to files, never to a screen.
matplotlib.use("Agg")
