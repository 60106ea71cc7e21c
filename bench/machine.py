"""What a benchmark ran on: the library variant loaded and the CPU (printed first by bench.py and
exact_kl.py, so every recorded run says which build and which machine it measured)."""

from __future__ import annotations

import os
import platform

from trmask import _ffi


def library_variant() -> str:
    """The build the process loaded, as the loader names it (``x86-64-v4``), else the
    ``TRMASK_VARIANT`` environment variable."""
    from pathlib import Path

    from trmask import _loader

    variant = _loader.variant_of(Path(library_path()))
    if variant is not None:
        return variant.isa
    return os.environ.get("TRMASK_VARIANT") or f"unknown ({platform.machine()})"


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
