"""The batch metrics of SPEC §9 as a flat dict of floats (names and formulas: docs/metrics.md)."""

from __future__ import annotations

from . import _ffi


def metrics_dict(m: _ffi.Metrics, criteria, rejected) -> dict:
    """The dict of one trm_mask call's trm_metrics_t: counts, ``rejected_<i>`` and
    ``row_*_<i>`` by criterion index ``i``, ``token_*_<est>`` for each estimator a criterion
    uses, and the mismatch metrics."""
    out = {key: float(getattr(m, key)) for key in ("n_rows", "n_rows_nonempty", "n_tokens", "n_rows_kept",
                                                    "n_tokens_kept", "masked_row_fraction")}
    for index, count in enumerate(rejected):
        out[f"rejected_{index}"] = float(count)
    for est in dict.fromkeys(c.estimator for c in criteria):
        if est in _ffi.BINARY_ESTIMATORS:
            slot = _ffi.ESTIMATORS[est] - _ffi.ESTIMATORS["bdiff"]
            out[f"token_mean_{est}"] = m.binary_token_mean[slot]
            out[f"token_max_{est}"] = m.binary_token_max[slot]
        else:
            out[f"token_mean_{est}"] = m.token_mean[_ffi.ESTIMATORS[est]]
            out[f"token_max_{est}"] = m.token_max[_ffi.ESTIMATORS[est]]
    for index, criterion in enumerate(criteria):
        if criterion.is_row:
            out[f"row_mean_{index}"] = m.row_mean[index]
            out[f"row_max_{index}"] = m.row_max[index]
            out[f"row_min_{index}"] = m.row_min[index]
    for key in ("log_ppl_abs_diff", "kl_k1", "kl_k3", "chi2_token", "plugin_kl_max", "plugin_kl_seq"):
        out[key] = getattr(m, key)
    out["plugin_max_len"] = float(m.max_len)
    # The drift metrics of the 2026 additions (docs/metrics.md).
    out["n_positions"] = float(m.n_positions)
    out["n_tokens_rejected"] = float(m.n_tokens_rejected)
    for key in _ffi.DRIFT_METRICS:
        out[key] = getattr(m, key)
    return out
