"""What a benchmark ran on: the library variant loaded and the CPU (printed first by bench.py and
exact_kl.py, so every recorded run says which build and which machine it measured)."""

from __future__ import annotations

import os
import platform

import trmask
from trmask import _ffi


def library_variant() -> str:
    """The build the process loaded: the loader's own answer when it has one, else the
    ``TRMASK_VARIANT`` environment variable, else read from the library's path (``...-v4...``)."""
    path = library_path()
    named = getattr(trmask, "library_variant", None) or os.environ.get("TRMASK_VARIANT")
    if named:
        return str(named)
    for variant in ("v4", "v3"):
        if variant in os.path.basename(os.path.dirname(os.path.dirname(path))) or variant in os.path.basename(path):
            return f"x86-64-{variant}"
    return "x86-64-v3 (the Makefile's build)" if platform.machine() == "x86_64" else platform.machine()


def library_path() -> str:
    return str(getattr(_ffi.lib, "_name", "?"))


def cpu() -> str:
    """Model name, family/model and whether AVX-512 is there (from /proc/cpuinfo)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        return platform.processor()
    avx512 = "avx512f" in fields.get("flags", "").split()
    return (f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')} model {fields.get('model', '?')}), "
            f"{'AVX-512' if avx512 else 'no AVX-512'}, {os.cpu_count()} cpus")


def header() -> str:
    return f"library {library_path()} | variant {library_variant()} | {cpu()}"
