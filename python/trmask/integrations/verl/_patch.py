"""`patch()`: verl's rollout-correction functions replaced by trmask's, everywhere verl holds them."""

from __future__ import annotations

import functools
import sys
from typing import Callable

from ...errors import MissingDependencyError

HELPER_MODULE = "verl.trainer.ppo.rollout_corr_helper"
#: The functions the drop-in replaces (the others in verl's module call these through its globals).
REPLACED = ("compute_rollout_rejection_mask", "compute_rollout_correction_weights",
            "compute_rollout_correction_and_rejection_mask", "compute_offpolicy_metrics")


class Patch:
    """What `patch()` returns: ``undo()`` (or leaving a ``with`` block) puts verl's functions back
    wherever `patch()` replaced them. ``replaced`` lists ``(module name, attribute)`` pairs."""

    def __init__(self, bindings: list):
        self._bindings = bindings  # (module, attribute, original, replacement)
        self.replaced = [(module.__name__, name) for module, name, _, _ in bindings]

    def undo(self) -> None:
        for module, name, original, replacement in reversed(self._bindings):
            if getattr(module, name, None) is replacement:  # leave what someone else set since
                setattr(module, name, original)
        self._bindings = []

    def __enter__(self) -> "Patch":
        return self

    def __exit__(self, *exc) -> None:
        self.undo()

    def __repr__(self) -> str:
        return f"Patch({len(self.replaced)} bindings replaced)"


def _on_cpu(args, kwargs) -> bool:
    """True unless a tensor argument lives on another device (bypass mode runs in the GPU actor:
    those calls stay with verl)."""
    for value in list(args) + list(kwargs.values()):
        device = getattr(value, "device", None)
        if device is not None and getattr(device, "type", "cpu") != "cpu":
            return False
    return True


def _dispatcher(ours: Callable, original: Callable) -> Callable:
    @functools.wraps(ours)
    def call(*args, **kwargs):
        return ours(*args, **kwargs) if _on_cpu(args, kwargs) else original(*args, **kwargs)

    call.__trmask_original__ = original
    return call


def patch() -> Patch:
    """Replace verl's four rollout-correction functions by trmask's (CPU tensors; calls with
    tensors on another device go to verl's own function), in verl's helper module and in every
    loaded ``verl.*`` module that imported them by name (``from ... import``). Returns a `Patch`
    whose ``undo()`` restores them. Patching twice replaces nothing more (already patched names
    are left alone)."""
    try:
        helper = __import__(HELPER_MODULE, fromlist=["_"])
    except ImportError as error:
        raise MissingDependencyError(f"trmask.verl.patch() needs verl (pip install verl==0.9.1): {error}") from error
    from . import _functions

    originals = {}
    for name in REPLACED:
        current = getattr(helper, name)
        originals[name] = getattr(current, "__trmask_original__", current)
    replacements = {name: _dispatcher(getattr(_functions, name), originals[name]) for name in REPLACED}
    by_identity = {id(function): name for name, function in originals.items()}
    bindings = []
    modules = [module for key, module in list(sys.modules.items())
               if module is not None and (key == "verl" or key.startswith("verl."))]
    for module in modules:
        for attribute, value in list(vars(module).items()):
            name = by_identity.get(id(value))
            if name is not None and value is originals[name]:
                setattr(module, attribute, replacements[name])
                bindings.append((module, attribute, value, replacements[name]))
    return Patch(bindings)
