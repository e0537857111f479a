"""The statistics of ``compare``: percentiles with bootstrap intervals, a two-sample test and
proportions with Wilson intervals, from scipy and numpy rather than written again.

Deterministic: the bootstrap draws from a generator seeded once (:data:`SEED`), so the same
two inputs give the same intervals on every run and machine (the analysis never reads the wall
clock, nor does ``compare`` draw from it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PERCENTILES", "SEED", "Proportion", "Quantiles", "proportion", "quantiles",
           "two_sample_p"]

#: The percentiles compared.
PERCENTILES = (50, 90, 99)
#: Seed of the bootstrap's generator.
SEED = 20261207
#: Resamples of the bootstrap, and the most values resampled at once (memory bound).
RESAMPLES = 1000
_CHUNK_VALUES = 4_000_000


@dataclass(frozen=True)
class Quantiles:
    """Percentiles of a sample with their bootstrap confidence intervals (same unit)."""

    n: int
    values: dict[int, float]
    low: dict[int, float]
    high: dict[int, float]


def quantiles(x: np.ndarray, percentiles: Sequence[int] = PERCENTILES,
              confidence: float = 0.95) -> Quantiles:
    """``percentiles`` of ``x`` and their percentile-bootstrap intervals; NaN when empty."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n == 0:
        nan = {p: float("nan") for p in percentiles}
        return Quantiles(0, nan, nan, nan)
    q = np.asarray(percentiles, dtype=np.float64)
    values = np.percentile(x, q)
    rng = np.random.default_rng(SEED)
    per_chunk = max(1, _CHUNK_VALUES // n)
    boots = []
    for start in range(0, RESAMPLES, per_chunk):
        k = min(per_chunk, RESAMPLES - start)
        sample = x[rng.integers(0, n, size=(k, n))]
        boots.append(np.percentile(sample, q, axis=1).T)
    b = np.vstack(boots)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(b, [alpha, 1 - alpha], axis=0)
    return Quantiles(n, dict(zip(percentiles, map(float, values), strict=True)),
                     dict(zip(percentiles, map(float, lo), strict=True)),
                     dict(zip(percentiles, map(float, hi), strict=True)))


def two_sample_p(a: np.ndarray, b: np.ndarray) -> float:
    """The p-value of the Mann-Whitney U test (two-sided) that ``a`` and ``b`` come from one
    distribution: no assumption of normality (latencies are skewed); NaN if either is empty."""
    from scipy.stats import mannwhitneyu

    if len(a) == 0 or len(b) == 0:
        return float("nan")
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


@dataclass(frozen=True)
class Proportion:
    """``k`` of ``n`` with its Wilson score interval (NaN when ``n`` is 0)."""

    k: int
    n: int
    rate: float
    low: float
    high: float


def proportion(k: int, n: int, confidence: float = 0.95) -> Proportion:
    """The rate ``k/n`` and its Wilson interval (sound near 0 and 1, where loss and completion
    rates live)."""
    from scipy.stats import binomtest

    if n == 0:
        nan = float("nan")
        return Proportion(k, n, nan, nan, nan)
    k = min(k, n)
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return Proportion(k, n, k / n, float(ci.low), float(ci.high))
