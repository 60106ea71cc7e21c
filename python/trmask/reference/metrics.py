"""Float64 oracle for the batch metrics reported beside the mask (docs/semantics.md §9).

Decisions where the contract is silent:

- Criterion numbering: ``rejected_<i>``, ``row_mean_<i>``, ``row_max_<i>`` and ``row_min_<i>``
  use ``i``, the criterion's index in the full ``criteria`` list (so a token criterion leaves a
  gap in the ``row_*`` names).
- Token metrics (``token_mean_<est>``, ``token_max_<est>``, ``kl_k1``, ``kl_k3``,
  ``chi2_token``) run over every counted token of the batch (a token-weighted mean) with the
  clamp applied; ``chi2_token`` is ``mean_t expm1(2 delta_t)``, equal to ``mean_t rho^2 - 1``
  without cancellation. ``ser`` and ``ln_trm`` criteria use estimator ``tv``.
- A mean or extremum over an empty set (no counted token, no non-empty row, ``B = 0``) is 0, as
  empty rows report 0 (docs/semantics.md §3); ``masked_row_fraction`` is 0 when ``B = 0``. NaN is reserved
  for metrics the inputs cannot define: ``log_ppl_abs_diff`` without both log-probabilities,
  ``plugin_kl_max`` without a ``max`` criterion, and the log-ratio metrics ``kl_k1``, ``kl_k3``,
  ``chi2_token``, ``plugin_kl_seq`` when the input is ``values`` (a divergence, not a log-ratio).
- ``log_ppl_abs_diff`` uses ``mean_t lt - mean_t lr = mean_t (lt - lr)`` computed from the
  float64 inputs (not the float32 delta), without the clamp (it is not an estimator); NaN
  tokens follow the policy like delta (``zero``: they contribute 0).
- NaN policy: ``skip`` excludes NaN tokens; ``zero`` counts them with delta 0; ``reject`` keeps
  them, so every mean or extremum that sees one is NaN.
- The 2026 additions: ``n_positions`` is every position of the grid (``B * T``, or ``N`` packed,
  whatever the rows cover); ``delta_mean``, ``delta_abs_mean`` and the ``min(k3, 10)`` means use
  the clamped delta, as every estimator; they are NaN for ``values``.
"""

from __future__ import annotations

import math

import numpy as np

from ._batch import prepare_batch
from .estimators import estimator_values
from .rows import evaluate_mask, exact_sum, parse_criteria, row_stats

__all__ = ["reference_metrics"]


def _mean(v: np.ndarray) -> float:
    return exact_sum(v) / v.size if v.size else 0.0


def _max(v: np.ndarray) -> float:
    return float(np.max(v)) if v.size else 0.0


def _min(v: np.ndarray) -> float:
    return float(np.min(v)) if v.size else 0.0


def reference_metrics(
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
    """Every docs/semantics.md §9 metric of one mask call, as a flat dict of Python floats.

    Arguments as in `reference_mask`. Keys: ``n_rows``, ``n_rows_nonempty``, ``n_tokens``,
    ``n_rows_kept``, ``n_tokens_kept``, ``masked_row_fraction`` (rejected rows over all rows),
    ``rejected_<i>`` per criterion, ``token_mean_<est>`` and ``token_max_<est>`` for each estimator
    a criterion uses, ``row_mean_<i>``, ``row_max_<i>``, ``row_min_<i>`` per row criterion (over
    non-empty rows), ``log_ppl_abs_diff`` (``mean_i |mean_t lt - mean_t lr|`` over non-empty rows),
    ``kl_k1``, ``kl_k3``, ``chi2_token``, ``plugin_kl_max`` (batch max of the first ``max``
    criterion's statistic over non-empty rows; a plug-in estimate of the maximum token KL over
    all reachable contexts, not a bound on it), ``plugin_kl_seq`` (``mean_i sum_t k3``) and
    ``plugin_max_len`` (``max_i T_i``). Counts are integral floats.
    """
    batch = prepare_batch(
        logp_train, logp_roll, log_ratio, values, mask, lengths, offsets, nan_policy
    )
    crits = parse_criteria(criteria)
    res = evaluate_mask(batch, crits, clamp, reject_empty)
    nonempty = batch.count > 0
    n_rows = batch.n_rows
    n_kept = int(np.count_nonzero(res["keep_row"]))
    out = {
        "n_rows": float(n_rows),
        "n_rows_nonempty": float(np.count_nonzero(nonempty)),
        "n_tokens": float(np.sum(batch.count)),
        "n_rows_kept": float(n_kept),
        "n_tokens_kept": float(np.count_nonzero(res["keep_token"])),
        "masked_row_fraction": (n_rows - n_kept) / n_rows if n_rows else 0.0,
    }
    for i, r in enumerate(res["rejected"]):
        out[f"rejected_{i}"] = float(r)

    def token_values(est: str) -> np.ndarray:
        return estimator_values(est, batch.x, clamp)[batch.counted]

    for est in dict.fromkeys(c.est for c in crits):
        v = token_values(est)
        out[f"token_mean_{est}"] = _mean(v)
        out[f"token_max_{est}"] = _max(v)

    first_max = next((i for i, c in enumerate(crits) if c.agg == "max"), None)
    out["plugin_kl_max"] = math.nan
    row_criteria = [i for i, c in enumerate(crits) if not c.is_token]
    for i, stat in zip(row_criteria, res["row_stat"]):
        s = stat[nonempty]
        out[f"row_mean_{i}"] = _mean(s)
        out[f"row_max_{i}"] = _max(s)
        out[f"row_min_{i}"] = _min(s)
        if i == first_max:
            out["plugin_kl_max"] = _max(s)

    out["log_ppl_abs_diff"] = math.nan
    if batch.lt_minus_lr is not None:
        per_row = [abs(_mean(batch.row(i, batch.lt_minus_lr))) for i in np.flatnonzero(nonempty)]
        out["log_ppl_abs_diff"] = _mean(np.array(per_row))
    for key in ("kl_k1", "kl_k3", "chi2_token", "plugin_kl_seq"):
        out[key] = math.nan
    if not batch.is_values:
        out["kl_k1"] = _mean(token_values("k1"))
        out["kl_k3"] = _mean(token_values("k3"))
        with np.errstate(over="ignore"):
            out["chi2_token"] = _mean(np.expm1(2.0 * token_values("delta")))
        out["plugin_kl_seq"] = _mean(row_stats(batch, "k3", clamp)["sum"][nonempty])
    out["plugin_max_len"] = float(np.max(batch.count)) if n_rows else 0.0
    out["n_positions"] = float(math.prod(batch.shape))
    out["n_tokens_rejected"] = out["n_tokens"] - out["n_tokens_kept"]
    for key in ("delta_mean", "delta_abs_mean", "k3_clamped_token_mean", "k3_clamped_row_mean"):
        out[key] = math.nan
    if not batch.is_values:
        delta = token_values("delta")
        out["delta_mean"] = _mean(delta)
        out["delta_abs_mean"] = _mean(np.abs(delta))
        capped = np.minimum(estimator_values("k3", batch.x, clamp), 10.0)  # NaN stays NaN
        out["k3_clamped_token_mean"] = _mean(capped[batch.counted])
        out["k3_clamped_row_mean"] = _mean(np.array([_mean(batch.row(i, capped)) for i in np.flatnonzero(nonempty)]))
    return out
