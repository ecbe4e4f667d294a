"""Vectorised random draws the simulator is built from (fast where numpy's are slow)."""

from __future__ import annotations

import numpy as np

from churnguard.synth.timeline import Array


def uniform_time(rng: np.random.Generator, a: Array, b: Array) -> Array:
    """Uniform second in [a, b)."""
    return a + np.floor(rng.random(len(a)) * (b - a)).astype(np.int64)


def sigmoid(z: Array) -> Array:
    """Logistic function (computed in place on a fresh array)."""
    out = np.negative(z, dtype=np.float64)
    np.exp(out, out=out)
    out += 1.0
    return np.reciprocal(out, out=out)


def pick(rng: np.random.Generator, probs: Array) -> Array:
    """One category per row of a (n, k) probability matrix."""
    return (rng.random(len(probs))[:, None] > np.cumsum(probs, axis=1)[:, :-1]).sum(axis=1)


def thin(n: Array, p: Array | float, rng: np.random.Generator) -> Array:
    """Binomial(n, p) per element, fast when most n are 0."""
    out = np.zeros_like(n)
    idx = np.flatnonzero(n > 0)
    out[idx] = rng.binomial(n[idx], p[idx] if isinstance(p, np.ndarray) else p)
    return out


def poisson(lam: Array, rng: np.random.Generator) -> Array:
    """Poisson(lam) per element by inversion; faster than Generator.poisson for small rates."""
    u = rng.random(len(lam))
    k = np.zeros(len(lam), dtype=np.int64)
    p = np.exp(-lam)
    cdf = p.copy()
    idx = np.flatnonzero(u > cdf)
    j = 0
    while idx.size and j < 100:
        j += 1
        k[idx] += 1
        p[idx] *= lam[idx] / j
        cdf[idx] += p[idx]
        idx = idx[u[idx] > cdf[idx]]
    return k
