"""The importance-weight rule (docs/semantics.md §5): `WeightRule` and its normalisation. The function
`importance_weights` lives in `_importance` (it needs `_api`, which needs this module)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from . import _ffi
from .errors import TrmaskError

LEVELS = tuple(_ffi.WEIGHT_LEVELS)
MODES = tuple(_ffi.WEIGHT_MODES)


@dataclass(frozen=True)
class WeightRule:
    """Rollout-correction importance weights (docs/semantics.md §5).

    ``level``: ``token`` (``w_t = rho_t = exp(delta_t)``), ``sequence`` (``exp(sum_t delta_t)``)
    or ``geometric`` (``exp(mean_t delta_t)``), sums over the row's counted tokens, in float64.
    ``mode``: ``truncate`` (TIS, ``min(w, hi)``: needs ``hi``, takes no ``lo``), ``clip``
    (``min(max(w, lo), hi)``) or ``mask`` (IcePop/MIS, ``w`` if ``lo <= w <= hi`` else 0); an
    absent bound leaves its side open. Weights are float32; for ``truncate`` and ``clip`` the
    bounds apply to the float32 value (rounded inward), so a written weight always satisfies them.
    ``mask`` decides in log space (``ln lo <= delta <= ln hi`` per token, on the float64 log weight
    for ``sequence``/``geometric``; docs/rules-2026.md): a kept weight is ``rho`` rounded to
    float32, a rejected one exactly 0.
    """

    level: str = "token"
    mode: str = "truncate"
    lo: Optional[float] = None
    hi: Optional[float] = None

    def __post_init__(self):
        if self.level not in LEVELS:
            raise TrmaskError(f"weight `level` is {self.level!r}; expected one of {', '.join(LEVELS)}")
        if self.mode not in MODES:
            raise TrmaskError(f"weight `mode` is {self.mode!r}; expected one of {', '.join(MODES)}")
        if self.mode == "truncate" and (self.hi is None or self.lo is not None):
            raise TrmaskError("weight mode 'truncate' takes the cap as `hi` (min(w, hi)) and no `lo`; "
                              "use mode 'clip' for a two-sided bound")
        lo = 0.0 if self.lo is None else float(self.lo)
        hi = math.inf if self.hi is None else float(self.hi)
        if not (0.0 <= lo <= hi and hi > 0.0):
            raise TrmaskError(f"weight bounds lo={self.lo!r}, hi={self.hi!r}; expected 0 <= lo <= hi, hi > 0, no NaN")
        if _inward(lo, up=True) > _inward(hi, up=False):
            raise TrmaskError(f"weight bounds lo={self.lo!r}, hi={self.hi!r} have no float32 value between them, so no "
                              f"float32 weight could satisfy them; widen them")

    def c_fields(self) -> tuple:
        """The fields of trm_weight_rule_t."""
        return (_ffi.WEIGHT_LEVELS[self.level], _ffi.WEIGHT_MODES[self.mode], 0.0 if self.lo is None else float(self.lo),
                math.inf if self.hi is None else float(self.hi))


def _inward(bound: float, up: bool) -> float:
    """`bound` rounded to float32 toward the inside of the band (as the library applies it)."""
    with np.errstate(over="ignore"):  # beyond float32's range: +inf
        rounded = float(np.float32(bound))
    if up and rounded < bound:
        return float(np.nextafter(np.float32(rounded), np.float32(np.inf)))
    if not up and rounded > bound:
        return float(np.nextafter(np.float32(rounded), np.float32(-np.inf)))
    return rounded


WeightsLike = Union[None, WeightRule, dict]


def normalize_weights(weights: WeightsLike) -> Optional[WeightRule]:
    """None, a WeightRule, or a dict of its fields (``{"level": "sequence", "hi": 2.0}``)."""
    if weights is None or isinstance(weights, WeightRule):
        return weights
    if isinstance(weights, dict):
        unknown = set(weights) - {"level", "mode", "lo", "hi"}
        if unknown:
            raise TrmaskError(f"`weights` has unknown keys {sorted(unknown)}; expected level, mode, lo, hi")
        return WeightRule(**weights)
    raise TrmaskError(f"`weights` is {weights!r}; expected a trmask.WeightRule or a dict of its fields")
