"""Float64 oracle for row reductions, partials and masks (docs/semantics.md §3, §4, §10).

Row loops are plain Python over numpy slices: this file is meant to be obviously right, not fast.

Decisions where the contract is silent (each confirmed by ``Tests/vectors/rows.json`` where it has a case):

- ``nonfinite`` counts mask- and length-valid tokens whose delta is NaN or +-inf, under every NaN
  policy and before the clamp (``nonfinite_skip`` row 2, ``nonfinite_zero`` row 2, ``clamp20``
  row 3 all report 1).
- ``reject``: ``count`` includes the NaN tokens and every statistic of the row is NaN, including
  ``max``/``min`` and the LN-TRM statistic (``nonfinite_reject`` rows 2 and 4). The row fails every
  row criterion and is counted in each row criterion's ``rejected``. With only token criteria the
  row is kept and only its NaN tokens are masked (``nonfinite_reject``, ``icepop_token``).
- ``skip``: NaN tokens are invalid everywhere, so LN-TRM positions ``1..T`` run over the row's
  remaining valid tokens (``nonfinite_skip`` row 5, whose last valid token is NaN: keeping the
  original positions would give 0.03089 instead of the recorded 0.03018). A row of only NaN
  tokens is empty.
- Token criteria count every counted token that fails, also in rows that a row criterion rejects
  ("before the AND"; no vector combines the two). Under ``reject`` a NaN token fails each of them
  (``nonfinite_reject``, ``icepop_token``: 5 rejected, 3 without the two NaN tokens).
- Empty rows (``count == 0``) report statistic 0, pass every criterion and are never counted in
  ``rejected``; ``reject_empty`` clears their ``keep_row`` without attributing them to a criterion
  (``reject_empty`` row 0).
- LN-TRM (docs/semantics.md §4.4): a token whose weight ``w_t`` is 0 (always the last one) contributes 0 to
  ``W`` even when its ``tv`` is ``+inf``, so an infinite last token does not turn the statistic
  into NaN. A row with ``Z(T) = 0`` reports statistic 0 and passes (``"kept_z0"`` in the vectors).
- ``ser`` is ``mean`` of ``tv``; ``ser`` and ``ln_trm`` are defined on ``tv`` only (docs/semantics.md §4.4), so
  another estimator for them is an invalid argument.
- ``values`` input (a per-token divergence) only makes sense with estimator ``value``; any other
  estimator on it is an invalid argument. ``value`` on a log-ratio input is the identity.
- Threshold checks (docs/semantics.md §4.6): NaN bounds, ``lo > hi``, ``hi < 0`` for a non-negative estimator,
  and a finite negative bound for ``ratio`` raise ``ValueError``. Infinite bounds disable a side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._batch import Batch, prepare_batch
from .estimators import ESTIMATORS, NONNEGATIVE_ESTIMATORS, estimator_values

__all__ = [
    "AGGREGATIONS",
    "Criterion",
    "parse_criteria",
    "reference_mask",
    "reference_merge",
    "reference_partials",
    "reference_stats",
]

AGGREGATIONS = ("max", "min", "sum", "mean", "token", "ser", "ln_trm")
STATS = ("sum", "mean", "max", "min")


@dataclass(frozen=True)
class Criterion:
    """One criterion of docs/semantics.md §4.1 / §4.4 after validation: keep iff ``lo <= stat <= hi``."""

    agg: str
    est: str
    lo: float
    hi: float
    kl_max: float | None = None
    eps: float | None = None

    @property
    def is_token(self) -> bool:
        return self.agg == "token"


def _bound(name: str, index: int, value, default: float) -> float:
    x = default if value is None else float(value)
    if math.isnan(x):
        raise ValueError(f"criterion {index}: `{name}` is NaN; expected a number (docs/semantics.md §4.6)")
    return x


def _positive(name: str, index: int, value) -> float:
    x = float(value)
    if not x > 0.0:
        raise ValueError(f"criterion {index}: `{name}` is {x!r}; expected a number > 0")
    return x


def _parse_one(spec, index: int) -> Criterion:
    if isinstance(spec, dict):
        unknown = set(spec) - {"agg", "est", "lo", "hi", "kl_max", "eps"}
        if unknown:
            raise ValueError(f"criterion {index}: unknown keys {sorted(unknown)}")
        agg, est = spec.get("agg"), spec.get("est")
        lo, hi, kl_max, eps = spec.get("lo"), spec.get("hi"), spec.get("kl_max"), spec.get("eps")
    elif isinstance(spec, (tuple, list)) and len(spec) == 4:
        agg, est, lo, hi = spec
        kl_max = eps = None
    else:
        raise ValueError(
            f"criterion {index} is {spec!r}; expected (agg, est, lo, hi) or a dict with `agg`"
        )
    if agg not in AGGREGATIONS:
        raise ValueError(f"criterion {index}: `agg` is {agg!r}; expected one of {AGGREGATIONS}")
    if agg in ("ser", "ln_trm"):
        if est not in (None, "tv"):
            raise ValueError(
                f"criterion {index}: `{agg}` is defined on `tv` (docs/semantics.md §4.4), not {est!r}"
            )
        est = "tv"
    if est not in ESTIMATORS:
        raise ValueError(f"criterion {index}: `est` is {est!r}; expected one of {ESTIMATORS}")
    lo = _bound("lo", index, lo, -math.inf)
    hi = _bound("hi", index, hi, math.inf)
    if lo > hi:
        raise ValueError(f"criterion {index}: `lo` = {lo!r} > `hi` = {hi!r} (docs/semantics.md §4.6)")
    if est in NONNEGATIVE_ESTIMATORS and hi < 0.0:
        raise ValueError(
            f"criterion {index}: `hi` = {hi!r} < 0 for non-negative `{est}` (docs/semantics.md §4.6)"
        )
    if est == "ratio" and (math.isfinite(lo) and lo < 0.0):
        raise ValueError(f"criterion {index}: ratio bound `lo` = {lo!r} must be >= 0 (docs/semantics.md §4.6)")
    if agg == "ln_trm":
        if kl_max is None:
            raise ValueError(f"criterion {index}: `ln_trm` needs `kl_max` (docs/semantics.md §4.4)")
        kl_max = _positive("kl_max", index, kl_max)
        eps = None if eps is None else _positive("eps", index, eps)
    elif kl_max is not None or eps is not None:
        raise ValueError(f"criterion {index}: `kl_max` and `eps` belong to `ln_trm` only")
    return Criterion(agg, est, lo, hi, kl_max, eps)


def parse_criteria(criteria) -> list[Criterion]:
    """Validate plain tuples ``(agg, est, lo, hi)`` or dicts into `Criterion` objects.

    Dict keys: ``agg``, ``est`` (``ser``/``ln_trm``: default and only ``tv``), ``lo`` (default
    ``-inf``), ``hi`` (default ``+inf``), and for ``ln_trm`` ``kl_max`` (required) and ``eps``
    (optional). Bounds may be numbers or ``"inf"``/``"-inf"`` strings.
    """
    return [_parse_one(c, i) for i, c in enumerate(criteria)]


def exact_sum(v: np.ndarray) -> float:
    """Correctly rounded float64 sum (``math.fsum``); plain IEEE sums once a term is not finite."""
    if np.all(np.isfinite(v)):
        try:
            return math.fsum(v)
        except OverflowError:
            pass
    with np.errstate(invalid="ignore"):  # +inf and -inf terms: NaN, as the IEEE sum defines
        return float(np.sum(v))


def _ln_trm_stat(tv: np.ndarray, kl_max: float, eps: float | None) -> float:
    """``W / Z(T)`` of docs/semantics.md §4.4 over one row's counted tokens, or 0 when ``Z(T) = 0``."""
    n = tv.size
    remaining = n - np.arange(1, n + 1, dtype=np.float64)  # T - t for t = 1..T
    w = np.minimum(1.0, np.sqrt(remaining * kl_max / 2.0))
    if eps is not None:
        w = np.minimum(w, remaining * eps)
    z = exact_sum(w)
    if z == 0.0:
        return 0.0
    with np.errstate(invalid="ignore"):  # inf * 0 at the last token, discarded by the where
        weighted = np.where(w > 0.0, tv * w, 0.0)
    return exact_sum(weighted) / z


def row_stats(batch: Batch, est: str, clamp) -> dict:
    """``sum, mean, max, min`` of ``est`` per row (docs/semantics.md §3): 0 for empty rows, NaN for NaN rows."""
    values = estimator_values(est, batch.x, clamp)
    out = {k: np.zeros(batch.n_rows) for k in STATS}
    for i in range(batch.n_rows):
        v = batch.row(i, values)
        if v.size == 0:
            continue
        if batch.nan_row[i]:
            for k in STATS:
                out[k][i] = math.nan
            continue
        out["sum"][i] = exact_sum(v)
        out["mean"][i] = out["sum"][i] / v.size
        out["max"][i] = np.max(v)
        out["min"][i] = np.min(v)
    return out


def _row_stat(batch: Batch, c: Criterion, clamp) -> np.ndarray:
    """The statistic a row criterion tests, per row (docs/semantics.md §4.1, §4.4)."""
    if c.agg == "ln_trm":
        tv = estimator_values("tv", batch.x, clamp)
        stat = np.zeros(batch.n_rows)
        for i in range(batch.n_rows):
            if batch.nan_row[i]:
                stat[i] = math.nan
            elif batch.count[i] > 0:
                stat[i] = _ln_trm_stat(batch.row(i, tv), c.kl_max, c.eps)
        return stat
    return row_stats(batch, c.est, clamp)["mean" if c.agg == "ser" else c.agg]


def _check_estimators(estimators, batch: Batch) -> tuple:
    """Known names, and only ``value`` on a ``values`` input (a divergence, not a log-ratio)."""
    ests = tuple(estimators)
    for e in ests:
        if e not in ESTIMATORS:
            raise ValueError(f"`estimators` has {e!r}; expected names from {ESTIMATORS}")
        if batch.is_values and e != "value":
            raise ValueError(
                f"`values` is a per-token divergence; use estimator `value`, not {e!r}"
            )
    return ests


def evaluate_mask(batch: Batch, criteria: list[Criterion], clamp, reject_empty: bool) -> dict:
    """docs/semantics.md §4 on a prepared batch; see `reference_mask` for the result."""
    _check_estimators([c.est for c in criteria], batch)
    empty = batch.count == 0
    keep_row = ~empty if reject_empty else np.ones(batch.n_rows, dtype=bool)
    token_ok = batch.counted.copy()
    row_stat, rejected = [], []
    for c in criteria:
        if c.is_token:
            v = estimator_values(c.est, batch.x, clamp)
            with np.errstate(invalid="ignore"):
                passes = (c.lo <= v) & (v <= c.hi)
            failing = batch.counted & ~passes
            rejected.append(int(np.count_nonzero(failing)))
            token_ok &= ~failing
            continue
        stat = _row_stat(batch, c, clamp)
        with np.errstate(invalid="ignore"):
            passes = empty | ((c.lo <= stat) & (stat <= c.hi))
        row_stat.append(stat)
        rejected.append(int(np.count_nonzero(~passes)))
        keep_row &= passes

    row_of_token = np.zeros(batch.x.size, dtype=bool)
    for i in np.flatnonzero(keep_row):
        row_of_token[batch.starts[i] : batch.stops[i]] = True
    keep_token = token_ok & row_of_token
    return {
        "count": batch.count,
        "nonfinite": batch.nonfinite,
        "row_stat": row_stat,
        "keep_row": keep_row,
        "keep_token": keep_token.reshape(batch.shape),
        "rejected": rejected,
    }


def reference_mask(
    logp_train=None,
    logp_roll=None,
    *,
    log_ratio=None,
    values=None,
    mask=None,
    lengths=None,
    offsets=None,
    criteria=(),
    nan_policy="reject",
    clamp=None,
    reject_empty=False,
) -> dict:
    """Row and token masks with their statistics (docs/semantics.md §3, §4, §10), in float64.

    Args:
        logp_train, logp_roll: training and rollout log-probabilities of the sampled tokens;
            delta is their float32 difference (`log_ratio`). Or pass ``log_ratio`` (delta) or
            ``values`` (a per-token divergence, estimator ``value``) instead.
        mask: validity, nonzero = valid (optional). lengths: int ``[B]``, the first ``L_i``
            tokens of each row are valid (optional). Both given: AND.
        offsets: int ``[B + 1]`` for the packed layout (1-D token arrays); absent: padded
            ``[B, T]``. Packed lengths count from each row's start.
        criteria: sequence of ``(agg, est, lo, hi)`` tuples or dicts (see `parse_criteria`),
            AND-combined; ``agg`` in ``max, min, sum, mean, token, ser, ln_trm``.
        nan_policy: ``reject`` (default), ``skip`` or ``zero`` (docs/semantics.md §4.5).
        clamp: optional ``c > 0`` applied to delta before every estimator (docs/semantics.md §2).
        reject_empty: clear ``keep_row`` of rows with no counted token (docs/semantics.md §3).

    Returns:
        A dict: ``count`` and ``nonfinite`` (int64 ``[B]``); ``row_stat``, one float64 ``[B]``
        per row criterion in order (the statistic it tested); ``keep_row`` (bool ``[B]``);
        ``keep_token`` (bool, the token grid; False outside every row); ``rejected`` (one int per
        criterion in order: rows, or tokens for token criteria, that it rejected before the AND).
        The module docstring lists the decisions taken where the contract is silent.
    """
    batch = prepare_batch(
        logp_train, logp_roll, log_ratio, values, mask, lengths, offsets, nan_policy
    )
    return evaluate_mask(batch, parse_criteria(criteria), clamp, reject_empty)


def reference_stats(
    logp_train=None,
    logp_roll=None,
    *,
    log_ratio=None,
    values=None,
    mask=None,
    lengths=None,
    offsets=None,
    estimators=("k2", "k3"),
    nan_policy="reject",
    clamp=None,
) -> dict:
    """Per-row ``count``, ``nonfinite`` and ``stats[est] = {sum, mean, max, min}`` (docs/semantics.md §3).

    Inputs as in `reference_mask`. Sums are correctly rounded (``math.fsum``); empty rows give 0
    everywhere; under ``reject`` a row with a NaN token has NaN for every statistic.
    """
    batch = prepare_batch(
        logp_train, logp_roll, log_ratio, values, mask, lengths, offsets, nan_policy
    )
    ests = _check_estimators(estimators, batch)
    return {
        "count": batch.count,
        "nonfinite": batch.nonfinite,
        "stats": {e: row_stats(batch, e, clamp) for e in ests},
    }


def reference_partials(
    logp_train=None,
    logp_roll=None,
    *,
    log_ratio=None,
    values=None,
    mask=None,
    lengths=None,
    offsets=None,
    estimators=("k2", "k3"),
    nan_policy="reject",
    clamp=None,
) -> dict:
    """Per-shard partials ``(count, sum, max, min)`` of each row (docs/semantics.md §3, partial rows).

    Call it once per context-parallel shard, each with the same ``B`` rows holding that shard's
    tokens, then combine with `reference_merge`. Returns ``count`` and ``nonfinite`` (int64
    ``[B]``) and ``stats[est] = {sum, max, min}``. A row with no token in the shard has
    ``count = 0`` and 0 statistics, and is the identity of the merge. LN-TRM is positional and
    has no partials.
    """
    stats = reference_stats(
        logp_train,
        logp_roll,
        log_ratio=log_ratio,
        values=values,
        mask=mask,
        lengths=lengths,
        offsets=offsets,
        estimators=estimators,
        nan_policy=nan_policy,
        clamp=clamp,
    )
    return {
        "count": stats["count"],
        "nonfinite": stats["nonfinite"],
        "stats": {e: {k: s[k] for k in ("sum", "max", "min")} for e, s in stats["stats"].items()},
    }


def reference_merge(partials_a: dict, partials_b: dict) -> dict:
    """Merge two partials of the same rows (docs/semantics.md §3): counts and sums add, max/min combine.

    A side with ``count = 0`` is the identity; NaN propagates through ``max``/``min``. The mean
    of the merged row is ``sum / count`` (0 when ``count = 0``).
    """
    if set(partials_a["stats"]) != set(partials_b["stats"]):
        raise ValueError("partials to merge must hold the same estimators")
    count_a, count_b = partials_a["count"], partials_b["count"]
    if count_a.shape != count_b.shape:
        raise ValueError(f"partials have {count_a.shape[0]} and {count_b.shape[0]} rows")
    only_a, only_b = count_b == 0, count_a == 0
    merged = {}
    for e, a in partials_a["stats"].items():
        b = partials_b["stats"][e]
        with np.errstate(invalid="ignore"):  # +inf + -inf: NaN, as the whole row's sum
            merged[e] = {"sum": a["sum"] + b["sum"]}
        for k, combine in (("max", np.maximum), ("min", np.minimum)):
            merged[e][k] = np.where(only_a, a[k], np.where(only_b, b[k], combine(a[k], b[k])))
    return {
        "count": count_a + count_b,
        "nonfinite": partials_a["nonfinite"] + partials_b["nonfinite"],
        "stats": merged,
    }
