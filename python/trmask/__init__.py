"""trmask: Trust Region Masking for long-horizon LLM reinforcement learning.

Fused one-pass kernels (Swift, behind a C ABI) that decide which sequences stay in the policy
gradient when the rollout engine's policy ``pi_roll`` and the training engine's ``pi_theta``
disagree. ``delta = logp_train - logp_roll`` is the log importance ratio (training minus rollout).

    import trmask
    result = trmask.trust_region_mask(logp_train, logp_roll, mask)   # TRM-Max&Avg defaults
    loss = (per_token_loss * result.keep_token).sum() / mask.sum()   # fixed denominator

numpy arrays and torch CPU tensors go in without copies; the same kind comes out.
"""

from ._advantage import AdvantageMaskResult, AdvantageRule, advantage_mask, off_policy_sequence_mask
from ._api import MaskResult, SequenceStats, sequence_stats, token_values, trust_region_mask
from ._bounds import BOUND_KEYS, PLUGIN_CAVEAT, PluginBounds, bounds, plugin_bounds
from ._correction import CorrectionResult, Rejection, divide_weights, rollout_correction
from ._correction_rows import CorrectionRows, reduce_correction_rows
from ._criteria import DEFAULT_CRITERIA, Criterion, parse_criteria
from ._groups import GroupAdvantages, group_advantages
from ._exact import DEFAULT_EXACT_CRITERIA, ExactKLResult, exact_kl, exact_trust_region_mask, topk_kl_lower_bound
from ._ffi import lib as _lib
from ._importance import importance_weights
from ._weights import WeightRule
from ._partials import PartialsDecision, RowPartials, keep_from_partials, merge_partials, row_partials
from ._paths import get_include, get_library, get_library_dir
from .errors import TrmaskError

#: The version, written once: TRM_VERSION_STRING in include/trmask.h, compiled into the library
#: (trm_version()) and read by the wheel's build hook for its metadata.
__version__ = _lib.trm_version().decode()
#: Version of the loaded shared library (the same as ``__version__``).
library_version = __version__

__all__ = [
    "Criterion", "DEFAULT_CRITERIA", "MaskResult", "SequenceStats", "TrmaskError", "parse_criteria",
    "sequence_stats", "token_values", "trust_region_mask",
    # The 2026 rules (docs/rules-2026.md): advantage-conditioned masks and GRPO groups.
    "AdvantageMaskResult", "AdvantageRule", "GroupAdvantages", "advantage_mask", "group_advantages",
    "off_policy_sequence_mask",
    # Importance weights beside the mask (docs/semantics.md §5).
    "WeightRule", "importance_weights",
    "BOUND_KEYS", "PLUGIN_CAVEAT", "PluginBounds", "bounds", "plugin_bounds",
    # Exact per-position divergence from logits (docs/semantics.md §6).
    "DEFAULT_EXACT_CRITERIA", "ExactKLResult", "exact_kl", "exact_trust_region_mask", "topk_kl_lower_bound",
    # Rows split across context-parallel shards (docs/semantics.md §3, partial rows).
    "PartialsDecision", "RowPartials", "keep_from_partials", "merge_partials", "row_partials",
    # Rollout correction in verl's arithmetic (weight masks, verl's statistics).
    "CorrectionResult", "Rejection", "divide_weights", "rollout_correction",
    # Its statistics across shards of rows (data-parallel ranks): row records and their reduce.
    "CorrectionRows", "reduce_correction_rows",
    # Building C, C++ or Rust programs against the installed package.
    "get_include", "get_library", "get_library_dir",
]
