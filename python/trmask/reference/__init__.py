"""Independent float64 reference implementation of the contract, docs/semantics.md (the test and
benchmark oracle).

Written from the contract alone: it imports only numpy and the standard library, never the compiled
library or torch, so a disagreement with the kernels points at one of the two, not at shared code.
Clarity comes before speed; do not use it on production-sized batches.
"""

from .correction import reference_correction
from .estimators import ESTIMATORS, estimator_values, log_ratio
from .logits import reference_exact_kl, reference_topk_kl_lower_bound
from .metrics import reference_metrics
from .rows import reference_mask, reference_merge, reference_partials, reference_stats
from .weights import reference_weights

__all__ = [
    "reference_correction",
    "ESTIMATORS",
    "estimator_values",
    "log_ratio",
    "reference_exact_kl",
    "reference_mask",
    "reference_merge",
    "reference_metrics",
    "reference_partials",
    "reference_stats",
    "reference_topk_kl_lower_bound",
    "reference_weights",
]
