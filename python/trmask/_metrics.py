"""The batch metrics (docs/metrics.md) as a flat dict: counts as Python ints, the rest floats."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from . import _ffi


def criterion_names(criteria: Sequence) -> list:
    """The name of each criterion in metric keys: ``<aggregation>_<estimator>`` (``max_k2``,
    ``mean_k3``, ``token_ratio``, ``ln_trm_tv``); a name used by an earlier criterion of the same
    call gets ``_2``, ``_3``, ... in call order (``mean_delta``, ``mean_delta_2``). Every metric
    about one criterion is ``<metric>_<name>`` (``rejected_max_k2``, ``row_max_max_k2``), so keys
    stay the same when criteria are reordered or added."""
    seen: Counter = Counter()
    names = []
    for criterion in criteria:
        base = f"{criterion.agg}_{criterion.estimator}"
        seen[base] += 1
        names.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return names


def metrics_dict(m: _ffi.Metrics, criteria, rejected) -> dict:
    """The dict of one trm_mask call's trm_metrics_t: counts, ``rejected_<name>`` per criterion
    and ``row_{mean,max,min}_<name>`` per row criterion (`criterion_names`),
    ``token_{mean,max}_<est>`` for each estimator a criterion uses, and the mismatch metrics."""
    out = {key: int(getattr(m, key)) for key in ("n_rows", "n_rows_nonempty", "n_tokens", "n_rows_kept",
                                                  "n_tokens_kept")}
    out["masked_row_fraction"] = m.masked_row_fraction
    names = criterion_names(criteria)
    for name, count in zip(names, rejected):
        out[f"rejected_{name}"] = int(count)
    for est in dict.fromkeys(c.estimator for c in criteria):
        if est in _ffi.BINARY_ESTIMATORS:
            slot = _ffi.ESTIMATORS[est] - _ffi.ESTIMATORS["bdiff"]
            out[f"token_mean_{est}"] = m.binary_token_mean[slot]
            out[f"token_max_{est}"] = m.binary_token_max[slot]
        else:
            out[f"token_mean_{est}"] = m.token_mean[_ffi.ESTIMATORS[est]]
            out[f"token_max_{est}"] = m.token_max[_ffi.ESTIMATORS[est]]
    for index, (name, criterion) in enumerate(zip(names, criteria)):
        if criterion.is_row:
            out[f"row_mean_{name}"] = m.row_mean[index]
            out[f"row_max_{name}"] = m.row_max[index]
            out[f"row_min_{name}"] = m.row_min[index]
    for key in ("log_ppl_abs_diff", "kl_k1", "kl_k3", "chi2_token", "plugin_kl_max", "plugin_kl_seq"):
        out[key] = getattr(m, key)
    out["plugin_max_len"] = int(m.max_len)
    # The drift metrics of the 2026 additions (docs/metrics.md).
    out["n_positions"] = int(m.n_positions)
    out["n_tokens_rejected"] = int(m.n_tokens_rejected)
    for key in _ffi.DRIFT_METRICS:
        out[key] = getattr(m, key)
    return out
