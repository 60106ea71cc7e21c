"""Finds and loads the trmask shared library: checks the CPU first, then the ABI version.

On x86-64 the package carries one build of the same sources per CPU level, in the folders glibc's
own ``glibc-hwcaps`` search uses (so a C program linked against ``_lib`` gets the same choice,
docs/c-abi.md)::

    trmask/_lib/glibc-hwcaps/x86-64-v4/libtrmask.so    AVX-512 F/BW/CD/DQ/VL on top of v3
    trmask/_lib/glibc-hwcaps/x86-64-v3/libtrmask.so    AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE

Other machines have one ``trmask/_lib/libtrmask.so``. Order: the ``TRMASK_LIBRARY`` environment
variable when set (and only it: a broken override is an error, not a silent fallback); else the
variant ``TRMASK_VARIANT`` names (``v3`` or ``v4``); else the highest variant this CPU runs. The
CPU is checked before anything is loaded: a library with instructions the CPU lacks would die
with SIGILL at its first call, which Python cannot catch.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import FrozenSet, Optional, Tuple

#: The ABI this wrapper was written for (``TRM_ABI_VERSION`` in include/trmask.h).
ABI_VERSION = 4

_LIBRARY_NAME = "libtrmask.dylib" if sys.platform == "darwin" else "libtrmask.so"
LIBRARY_DIR = Path(__file__).resolve().parent / "_lib"


@dataclass(frozen=True)
class Variant:
    """One build of the library: its short name, the compiler's CPU level, and the CPU features
    that level lets the compiler use (Linux /proc/cpuinfo flag, display name)."""

    name: str
    isa: str
    features: Tuple[Tuple[str, str], ...]

    @property
    def path(self) -> Path:
        return LIBRARY_DIR / "glibc-hwcaps" / self.isa / _LIBRARY_NAME

    def feature_names(self) -> str:
        return " ".join(display for _, display in self.features)


# x86-64-v2 and v3 as the psABI defines them (the compiler may emit any of these, not only AVX2
# and FMA). /proc/cpuinfo spells SSE3 "pni" and LZCNT "abm".
_V3_FEATURES = (("pni", "SSE3"), ("ssse3", "SSSE3"), ("sse4_1", "SSE4.1"), ("sse4_2", "SSE4.2"), ("popcnt", "POPCNT"),
                ("cx16", "CMPXCHG16B"), ("lahf_lm", "LAHF"), ("avx", "AVX"), ("avx2", "AVX2"),
                ("fma", "FMA"), ("bmi1", "BMI1"), ("bmi2", "BMI2"), ("f16c", "F16C"), ("abm", "LZCNT"),
                ("movbe", "MOVBE"), ("xsave", "XSAVE"))
_V4_FEATURES = _V3_FEATURES + (("avx512f", "AVX512F"), ("avx512bw", "AVX512BW"), ("avx512cd", "AVX512CD"),
                               ("avx512dq", "AVX512DQ"), ("avx512vl", "AVX512VL"))

#: The x86-64 variants, best first.
VARIANTS = (Variant("v4", "x86-64-v4", _V4_FEATURES), Variant("v3", "x86-64-v3", _V3_FEATURES))


def has_variants() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def cpu_flags() -> FrozenSet[str]:
    """This CPU's feature flags as Linux reports them (features the kernel has not enabled, such as
    AVX-512 without its register state, are left out there). Empty when unknown."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def missing_features(variant: Variant, flags: Optional[FrozenSet[str]] = None) -> list:
    """Display names of the features `variant` uses that this CPU lacks (empty: it runs here)."""
    flags = cpu_flags() if flags is None else flags
    return [display for flag, display in variant.features if flag not in flags]


def unsupported_reason(variant: Variant, flags: Optional[FrozenSet[str]] = None) -> Optional[str]:
    """Why `variant` cannot run on this CPU, or None when it can."""
    missing = missing_features(variant, flags)
    if not missing:
        return None
    return f"the {variant.isa} build of trmask needs {', '.join(missing)}, which this CPU lacks (/proc/cpuinfo)"


def variant_named(name: str) -> Variant:
    for variant in VARIANTS:
        if name in (variant.name, variant.isa):
            return variant
    raise ImportError(f"trmask: TRMASK_VARIANT={name!r} names no variant; use "
                      + " or ".join(v.name for v in VARIANTS))


def variant_of(path: Path) -> Optional[Variant]:
    """The variant a library file belongs to, by its folder (None for one outside the layout)."""
    return next((v for v in VARIANTS if Path(path).parent.name == v.isa), None)


def choose() -> Path:
    """The library to load, by the order in the module docstring. ImportError, naming the missing
    CPU features, for a variant this CPU cannot run (an override inside the variant folders is
    checked too)."""
    override = os.environ.get("TRMASK_LIBRARY")
    forced = os.environ.get("TRMASK_VARIANT")
    flags = cpu_flags()
    if override:
        path, variant, setting = Path(override), variant_of(Path(override)), f"TRMASK_LIBRARY={override}"
    elif not has_variants():
        return LIBRARY_DIR / _LIBRARY_NAME
    elif forced:
        variant = variant_named(forced)
        path, setting = variant.path, f"TRMASK_VARIANT={forced}"
    else:
        runnable = [v for v in VARIANTS if not missing_features(v, flags)]
        if not runnable:
            lowest = VARIANTS[-1]
            raise ImportError(f"trmask: {unsupported_reason(lowest, flags)}. trmask runs on x86-64 CPUs with "
                              f"{lowest.isa} (AVX2 and FMA: Intel Haswell, AMD Zen, or newer).")
        return runnable[0].path
    reason = unsupported_reason(variant, flags) if variant else None
    if reason:
        raise ImportError(f"trmask: {setting}: {reason}. Unset it to use the best variant this CPU runs.")
    return path


def load() -> ctypes.CDLL:
    path = choose()
    try:
        library = ctypes.CDLL(str(path))
    except OSError as error:
        raise ImportError(
            f"trmask: cannot load the shared library. Tried:\n  {path}: {error}\n"
            "Install the trmask wheel (README.md, Install), build the libraries with `make` at the repository "
            "root, or set TRMASK_LIBRARY to a library's path.") from error
    library.trm_abi_version.argtypes = []
    library.trm_abi_version.restype = ctypes.c_uint32
    found = library.trm_abi_version()
    if found != ABI_VERSION:
        raise ImportError(
            f"trmask: {path} implements ABI version {found}, but this Python package needs "
            f"version {ABI_VERSION}. Rebuild the library with `make` from the same checkout.")
    return library
