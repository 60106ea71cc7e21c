"""The paper's error bounds (docs/semantics.md §7) as a calculator, and their plug-in from a batch.

`bounds` evaluates every bound of docs/semantics.md §7 through the C ABI (`trm_bounds_compute`): exact finite
sums, O(log T) without ``dbar``, a few ulps of accuracy. `plugin_bounds` estimates the inputs from
a batch (the result of `trust_region_mask` or `sequence_stats`) and evaluates the bounds there.

The theorems need ``kl_max`` to bound the token KL over **all reachable contexts**. A batch
maximum is only a plug-in estimate of it: bounds computed from one are estimates, not guarantees.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any, Optional

import numpy as np

from . import _ffi
from ._api import MaskResult, SequenceStats, raise_for_status
from ._arrays import is_torch
from .errors import TrmaskError
from .report import certifies_nothing, format_plugin_bounds

BOUND_KEYS = _ffi.BOUND_KEYS

#: What every output built on batch estimates says (docs/semantics.md §7).
PLUGIN_CAVEAT = ("plug-in estimate: kl_max is a batch maximum, not the maximum token KL over all reachable "
                 "contexts that the theorems need (docs/semantics.md §7); these bounds are estimates, not guarantees")


def _real(name: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TrmaskError(f"`{name}` has type {type(value).__name__}; expected a real number")
    x = float(value)
    if not math.isfinite(x) or x < 0 or (positive and x == 0):
        raise TrmaskError(f"`{name}` is {x!r}; expected a finite number {'> 0' if positive else '>= 0'}")
    return x


def _length(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TrmaskError(f"`T` has type {type(value).__name__}; expected an integer >= 1")
    T = int(value)
    if not 1 <= T <= 2**63 - 1:
        raise TrmaskError(f"`T` is {T}; expected an integer >= 1 (the sequence length in tokens)")
    return T


def _dbar(value: Any, T: int) -> np.ndarray:
    if is_torch(value):
        value = value.detach().cpu().numpy()
    try:
        array = np.ascontiguousarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TrmaskError(f"`dbar` cannot be read as numbers ({error}); expected {T} finite values >= 0") from None
    if array.shape != (T,):
        raise TrmaskError(f"`dbar` has shape {array.shape}; expected ({T},), one mean TV per position t = 1..T")
    bad = np.flatnonzero(~(np.isfinite(array) & (array >= 0)))
    if bad.size:
        raise TrmaskError(f"`dbar[{bad[0]}]` is {array[bad[0]]!r}; expected finite values >= 0")
    return array


def bounds(T: int, kl_max: float, kl_seq: float, *, eps: Optional[float] = None, tv_seq: Optional[float] = None,
           dbar: Any = None, reward_range: float = 1.0) -> dict:
    """Every error bound of docs/semantics.md §7 on the surrogate-objective error, as a dict of floats.

    - ``T``: sequence length (tokens), an integer >= 1.
    - ``kl_max``: ``delta = D_KL^{tok,max}`` in nats, the maximum token KL(pi_roll || pi_theta)
      over **all reachable contexts**. A maximum over a training batch is only a plug-in estimate
      of it: bounds computed from one are estimates, not the theorems' guarantee.
    - ``kl_seq``: ``D_KL^{seq}``, the sequence-level KL.
    - ``eps``: ``D_TV^{tok,max}``; ``None`` derives the Pinsker value ``sqrt(kl_max / 2)``.
    - ``tv_seq``: ``D_TV^{seq}``; ``None`` derives ``sqrt(kl_seq / 2)``.
    - ``dbar``: per-position mean TV ``Dbar_1..Dbar_T`` (``T`` finite values >= 0, read as
      float64); ``None`` means ``eps`` at every position. Enters ``linear`` and ``adaptive`` only.
    - ``reward_range``: ``r_max - r_min`` (> 0); every bound is multiplied by it (the theorems
      state rewards in ``[0, 1]``).

    Keys, in order: ``classical_tv, classical_kl, coupling, pm_kl, pm_tv, mixed_kl, mixed_tv,
    linear, adaptive, unified`` (``unified`` = ``B*``, the minimum of the six tight bounds). The
    sums are exact finite sums, not closed-form upper bounds, computed in O(log T) without
    ``dbar`` (``T = 10**9`` takes microseconds) and accurate to a few ulps.

    Raises `TrmaskError` naming the argument when one is out of its domain.
    """
    T = _length(T)
    request = _ffi.BoundInputs(ctypes.sizeof(_ffi.BoundInputs), 0, T, _real("kl_max", kl_max),
                               _real("kl_seq", kl_seq), math.nan if eps is None else _real("eps", eps),
                               math.nan if tv_seq is None else _real("tv_seq", tv_seq),
                               _real("reward_range", reward_range, positive=True), None, 0)
    values = None  # the dbar array, referenced here until the call returns
    if dbar is not None:
        values = _dbar(dbar, T)
        request.dbar = values.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        request.dbar_count = T
    out = _ffi.BoundsOut(ctypes.sizeof(_ffi.BoundsOut), 0)
    status = _ffi.lib.trm_bounds_compute(ctypes.byref(request), ctypes.byref(out))
    raise_for_status(status, "bounds")
    return {key: getattr(out, key) for key in BOUND_KEYS}


@dataclass(frozen=True, repr=False)
class PluginBounds:
    """The error bounds of docs/semantics.md §7 at batch estimates of their inputs (what `plugin_bounds`
    returns). **A plug-in estimate**: ``kl_max`` is a batch maximum, not the maximum token KL over
    all reachable contexts that the theorems need, so these bounds are estimates, not guarantees.

    - ``T``: the longest row (valid tokens);
    - ``kl_max``: the batch maximum of the per-row maximum of ``estimators[0]`` (k2, or the exact
      per-token KL for ``values=`` input);
    - ``kl_seq``: the mean over rows of the per-row sum of ``estimators[1]`` (k3, or the exact KL),
      an estimate of ``D_KL^{seq}``;
    - ``rows``: the non-empty rows the estimates use; ``excluded_rows``: non-empty rows left out
      because a statistic is NaN or infinite (with them every bound would be infinite);
    - ``rows_used``: ``"all"`` or ``"kept"`` (only rows the mask keeps);
    - ``source``: where the estimates come from (``"row_stats"``, ``"sequence_stats"`` or
      ``"metrics"``);
    - ``bounds``: the dict `bounds` returns; ``caveat``: the plug-in caveat as one line.
    """

    T: int
    kl_max: float
    kl_seq: float
    rows: int
    excluded_rows: Optional[int]
    estimators: tuple
    rows_used: str
    source: str
    reward_range: float
    bounds: dict = field(repr=False)
    caveat: str = field(default=PLUGIN_CAVEAT, repr=False)

    def to_dict(self) -> dict:
        return {"T": self.T, "kl_max": self.kl_max, "kl_seq": self.kl_seq, "rows": self.rows,
                "excluded_rows": self.excluded_rows, "estimators": list(self.estimators),
                "rows_used": self.rows_used, "source": self.source, "reward_range": self.reward_range,
                "bounds": dict(self.bounds), "certifies_nothing": certifies_nothing(self.bounds, self.reward_range),
                "caveat": self.caveat}

    def __repr__(self) -> str:
        return (f"PluginBounds(T={self.T}, kl_max={self.kl_max:.6g}, kl_seq={self.kl_seq:.6g}, rows={self.rows}, "
                f"rows_used={self.rows_used!r}, unified={self.bounds['unified']:.6g}; a plug-in estimate: kl_max is "
                "a batch maximum, not the theorems' maximum over all reachable contexts)")

    def __str__(self) -> str:
        return format_plugin_bounds(self)


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if is_torch(x) else np.asarray(x)


_PAIRS = (("k2", "k3"), ("value", "value"))  # (max estimator, sum estimator)


def _from_rows(max_stat, seq_sum, count, keep, estimators, rows_used, source, reward_range) -> PluginBounds:
    count = _numpy(count).astype(np.int64)
    max_stat = _numpy(max_stat).astype(np.float64)
    seq_sum = _numpy(seq_sum).astype(np.float64)
    use = count > 0
    if keep is not None:
        use &= _numpy(keep).astype(bool)
    finite = np.isfinite(max_stat) & np.isfinite(seq_sum)
    excluded = int((use & ~finite).sum())
    use &= finite
    if not use.any():
        what = "kept rows" if rows_used == "kept" else "rows"
        raise TrmaskError(f"plugin_bounds: no non-empty {what} with finite statistics ({excluded} non-finite); "
                          "the bounds need at least one")
    T = int(count[use].max())
    kl_max = float(max_stat[use].max())
    kl_seq = float(seq_sum[use].mean())
    return PluginBounds(T, kl_max, kl_seq, int(use.sum()), excluded, estimators, rows_used, source, reward_range,
                        bounds(T, kl_max, kl_seq, reward_range=reward_range))


def plugin_bounds(result: Any, *, reward_range: float = 1.0, kept_only: bool = False) -> PluginBounds:
    """The error bounds of docs/semantics.md §7 at batch estimates of ``T``, ``kl_max`` and ``kl_seq``.

    **A plug-in estimate, not a certificate of the theorems**: ``kl_max`` here is a batch
    maximum, while the theorems need the maximum token KL over all reachable contexts (docs/semantics.md §7).

    ``result`` is what `sequence_stats` returns (with estimators ``k2`` and ``k3``, or ``value``),
    or what `trust_region_mask` returns. From a `MaskResult` the estimates come from its row
    statistics: a ``max:k2`` criterion gives the per-row maximum, a ``sum:k3`` criterion (or
    ``mean:k3``, times the row count) the per-row sum; for ``values=`` input, ``max:value`` and
    ``sum:value`` / ``mean:value``. Without them, a ``metrics`` dict with the docs/semantics.md §9 keys
    ``plugin_kl_max``, ``plugin_kl_seq`` and ``plugin_max_len`` is used when the result has one.

    Estimates: ``T`` = longest row, ``kl_max`` = batch maximum of the per-row maximum,
    ``kl_seq`` = mean over non-empty rows of the per-row sum. Rows whose statistics are NaN or
    infinite are left out and counted in ``excluded_rows``. ``kept_only`` (MaskResult only) uses
    just the rows the mask keeps: the trust region the mask enforces. ``eps`` and ``tv_seq`` take
    their Pinsker values.
    """
    reward_range = _real("reward_range", reward_range, positive=True)
    if isinstance(result, SequenceStats):
        if kept_only:
            raise TrmaskError("`kept_only` needs a MaskResult (sequence_stats keeps every row)")
        for high, total in _PAIRS:
            if high in result.stats and total in result.stats:
                return _from_rows(result.stats[high]["max"], result.stats[total]["sum"], result.count, None,
                                  (high, total), "all", "sequence_stats", reward_range)
        raise TrmaskError(f"plugin_bounds needs sequence_stats with estimators k2 and k3 (or value); got "
                          f"{', '.join(result.stats) or 'none'}: call sequence_stats(..., estimators=('k2', 'k3'))")
    if isinstance(result, MaskResult):
        row_criteria = [c for c in result.criteria if c.is_row]
        stats = {(c.agg, c.estimator): s for c, s in zip(row_criteria, result.row_stats)}
        for high, total in _PAIRS:
            if ("max", high) not in stats:
                continue
            if ("sum", total) in stats:
                seq_sum = _numpy(stats[("sum", total)])
            elif ("mean", total) in stats:
                seq_sum = _numpy(stats[("mean", total)]).astype(np.float64) * _numpy(result.count)
            else:
                continue
            keep = result.keep_row if kept_only else None
            return _from_rows(stats[("max", high)], seq_sum, result.count, keep, (high, total),
                              "kept" if kept_only else "all", "row_stats", reward_range)
        metrics = getattr(result, "metrics", None)
        keys = ("plugin_kl_max", "plugin_kl_seq", "plugin_max_len")
        if not kept_only and isinstance(metrics, dict) and all(k in metrics for k in keys):
            T, kl_max, kl_seq = int(metrics["plugin_max_len"]), float(metrics["plugin_kl_max"]), float(metrics["plugin_kl_seq"])
            if T < 1 or not (math.isfinite(kl_max) and math.isfinite(kl_seq)):
                raise TrmaskError(f"plugin_bounds: the result's metrics give plugin_max_len {T}, plugin_kl_max {kl_max}, "
                                  f"plugin_kl_seq {kl_seq}; the bounds need a valid token and finite divergences "
                                  "(add max:k2 and sum:k3 criteria to leave out rows with non-finite statistics)")
            return PluginBounds(T, kl_max, kl_seq, int(metrics.get("n_rows_nonempty", 0)), None, ("k2", "k3"), "all",
                                "metrics", reward_range, bounds(T, kl_max, kl_seq, reward_range=reward_range))
        have = ", ".join(str(c) for c in row_criteria) or "none"
        missing = "max:k2" if ("max", "k2") not in stats else "sum:k3 or mean:k3"
        raise TrmaskError(f"plugin_bounds needs a {missing} criterion in the mask result (its criteria: {have}); "
                          "add it, e.g. criteria='max:k2<=0.1,mean:k3<=0.002', or pass sequence_stats(...)")
    raise TrmaskError(f"`result` has type {type(result).__name__}; expected the result of trust_region_mask "
                      "or sequence_stats")
