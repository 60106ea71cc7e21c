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
from ._criteria import DEFAULT_CRITERIA, Criterion, parse_criteria
from ._groups import GroupAdvantages, group_advantages
from ._exact import DEFAULT_EXACT_CRITERIA, ExactKLResult, exact_kl, exact_trust_region_mask, topk_kl_lower_bound
from ._ffi import lib as _lib
from ._weights import WeightRule, importance_weights
from ._partials import PartialsDecision, RowPartials, keep_from_partials, merge_partials, row_partials
from .errors import TrmaskError

__version__ = "0.1.0"
#: Version of the loaded shared library.
library_version = _lib.trm_version().decode()

__all__ = [
    "Criterion", "DEFAULT_CRITERIA", "MaskResult", "SequenceStats", "TrmaskError", "parse_criteria",
    "sequence_stats", "token_values", "trust_region_mask",
    # The 2026 rules (docs/rules-2026.md): advantage-conditioned masks and GRPO groups.
    "AdvantageMaskResult", "AdvantageRule", "GroupAdvantages", "advantage_mask", "group_advantages",
    "off_policy_sequence_mask",
    # Importance weights beside the mask (SPEC §5).
    "WeightRule", "importance_weights",
    "BOUND_KEYS", "PLUGIN_CAVEAT", "PluginBounds", "bounds", "plugin_bounds",
    # Exact per-position divergence from logits (SPEC §6).
    "DEFAULT_EXACT_CRITERIA", "ExactKLResult", "exact_kl", "exact_trust_region_mask", "topk_kl_lower_bound",
    # Rows split across context-parallel shards (SPEC §3, partial rows).
    "PartialsDecision", "RowPartials", "keep_from_partials", "merge_partials", "row_partials",
]
