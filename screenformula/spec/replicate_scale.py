"""Replicate effect scales: each replicate's selection strength, as a factor on its effects.

Replicates of one condition often differ in how far selection went (more cell doublings,
a stronger drug dose): one replicate shows every depletion about twice as deep as the
other. A model with one effect per condition reads that difference as noise, and a gene's
posterior widens with it. With ``replicate_scale="condition"`` every sample ``r`` of a
condition with two or more samples multiplies the mean's treatment part (every
population-level slope and every varying effect whose design differs between samples) by
its own factor ``s_r``, with ``log s ~ ZeroSumNormal(sigma)`` within the condition, so the
reported effect is that of the replicates' geometric mean. The reference condition and a
condition with one sample keep ``s = 1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from screenformula.errors import FormulaError
from screenformula.spec.terms import LinearPredictor

#: ``replicate_scale`` values: ``"condition"`` (a factor per replicate within each treated
#: condition) or ``"none"``.
REPLICATE_SCALE_MODES = ("condition", "none")
ReplicateScaleMode = Literal["condition", "none"]
#: The default of `ScreenModel`, the config file and ``screenformula test``.
DEFAULT_REPLICATE_SCALE: ReplicateScaleMode = "condition"


@dataclass(frozen=True)
class ScaleGroup:
    """The replicates of one condition that get their own effect scales."""

    label: str  # the condition's name: its non-zero population coefficients
    samples: tuple[int, ...]  # positions among the screen samples
    names: tuple[str, ...]  # their sample names


@dataclass(frozen=True)
class ReplicateScaleSpec:
    """Which screen samples get an effect scale, by condition (empty: no scales)."""

    mode: ReplicateScaleMode = "none"
    groups: tuple[ScaleGroup, ...] = ()

    @property
    def active(self) -> bool:
        """Whether the model has any scale to estimate."""
        return bool(self.groups)

    @property
    def samples(self) -> tuple[int, ...]:
        """Positions of every scaled replicate among the screen samples, group by group."""
        return tuple(i for g in self.groups for i in g.samples)

    @property
    def names(self) -> tuple[str, ...]:
        """Names of every scaled replicate, in the order of `samples`."""
        return tuple(n for g in self.groups for n in g.names)

    def full(self, factors: np.ndarray, n_samples: int) -> np.ndarray:
        """Every screen sample's factor from the scaled replicates' (last axis), 1 elsewhere."""
        factors = np.asarray(factors, dtype=float)
        out = np.ones((*factors.shape[:-1], n_samples))
        out[..., list(self.samples)] = factors
        return out


def replicate_scale_spec(
    mode: str | None, mean: LinearPredictor, sample_names: tuple[str, ...] | list[str]
) -> ReplicateScaleSpec:
    """Resolve ``replicate_scale`` against the mean's design.

    A condition is a set of screen samples with the same population-level design row; it
    gets scales when it has at least two samples and a non-zero row (the reference
    condition's row is all zero: it carries no treatment effect to scale).
    """
    mode = "none" if mode in (None, False) else mode
    if mode not in REPLICATE_SCALE_MODES:
        raise FormulaError(
            f"unknown replicate_scale {mode!r}: choose {' or '.join(REPLICATE_SCALE_MODES)}"
        )
    if mode == "none":
        return ReplicateScaleSpec()
    X = np.asarray(mean.common.X, dtype=float)
    if X.shape[1] == 0:
        return ReplicateScaleSpec(mode="condition")
    conditions = mean.common.conditions()
    groups = []
    for k in range(int(conditions.max()) + 1 if len(conditions) else 0):
        rows = np.flatnonzero(conditions == k)
        if len(rows) < 2 or not X[rows[0]].any():
            continue
        groups.append(
            ScaleGroup(
                label=mean.common.condition_name(X[rows[0]]),
                samples=tuple(int(r) for r in rows),
                names=tuple(str(sample_names[r]) for r in rows),
            )
        )
    return ReplicateScaleSpec(mode="condition", groups=tuple(groups))


__all__ = [
    "DEFAULT_REPLICATE_SCALE",
    "REPLICATE_SCALE_MODES",
    "ReplicateScaleSpec",
    "ScaleGroup",
    "replicate_scale_spec",
]
