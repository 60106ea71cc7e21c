"""verl 0.9.1's rollout correction on trmask's kernels (`import trmask.verl`; docs/verl.md).

The four functions of ``verl.trainer.ppo.rollout_corr_helper`` with verl's names, arguments,
defaults, return types, metric keys and refusals, computed in one native pass each::

    import trmask.verl
    handle = trmask.verl.patch()     # verl's trainers now call trmask (CPU tensors)
    ...
    handle.undo()

or call them directly (``trmask.verl.compute_rollout_correction_and_rejection_mask(...)``). torch
nested tensors with the jagged layout go in and come out without padding.
"""

from ... import TrmaskError
from ._config import REJECTION_OPTIONS, VerlAssertionError, VerlTypeError, VerlZeroDivisionError
from ._functions import (SAFETY_BOUND, WeightsBatch, compute_offpolicy_metrics, compute_rollout_correction_and_rejection_mask,
                         compute_rollout_correction_weights, compute_rollout_rejection_mask)
from ._patch import Patch, patch

__all__ = [
    "compute_rollout_rejection_mask", "compute_rollout_correction_weights",
    "compute_rollout_correction_and_rejection_mask", "compute_offpolicy_metrics", "patch", "Patch",
    "REJECTION_OPTIONS", "SAFETY_BOUND", "WeightsBatch", "VerlTypeError", "VerlZeroDivisionError",
    "VerlAssertionError", "TrmaskError",
]
