"""What `trmask --version` prints: the version, the ABI, the library loaded and its CPU variant."""

from __future__ import annotations

import os
from pathlib import Path

from . import _loader
from ._ffi import lib as _lib


def variant_line(library: Path) -> str:
    """The loaded library's CPU variant, how it was chosen, and the CPU features its build uses."""
    if not _loader.has_variants():
        return "variant: one build for this machine (compiler's default CPU target)"
    variant = _loader.variant_of(library)
    if os.environ.get("TRMASK_LIBRARY"):
        how = "set by TRMASK_LIBRARY"
    elif os.environ.get("TRMASK_VARIANT"):
        how = f"forced by TRMASK_VARIANT={os.environ['TRMASK_VARIANT']}"
    else:
        how = "the best this CPU runs; TRMASK_VARIANT=" + "|".join(v.name for v in _loader.VARIANTS) + " forces one"
    if variant is None:
        return f"variant: unknown ({how}, outside the package's variant folders)"
    return f"variant: {variant.isa} ({how})\nCPU features the build uses: {variant.feature_names()}"


def version_report() -> str:
    library = Path(_lib._name).resolve()
    return "\n".join([f"trmask {_lib.trm_version().decode()} (ABI version {_lib.trm_abi_version()})",
                      f"library: {library}", variant_line(library)])
