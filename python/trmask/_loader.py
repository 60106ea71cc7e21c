"""Finds and loads the trmask shared library, and checks its ABI version.

Order: the ``TRMASK_LIBRARY`` environment variable when set (and only it: a broken override is an
error, not a silent fallback), else the copy inside this package (``trmask/_lib``), which
``make`` puts there.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

#: The ABI this wrapper was written for (``TRM_ABI_VERSION`` in include/trmask.h).
ABI_VERSION = 3

_LIBRARY_NAME = "libtrmask.dylib" if sys.platform == "darwin" else "libtrmask.so"


def candidate_paths() -> list[Path]:
    override = os.environ.get("TRMASK_LIBRARY")
    if override:
        return [Path(override)]
    return [Path(__file__).resolve().parent / "_lib" / _LIBRARY_NAME]


def load() -> ctypes.CDLL:
    tried = []
    for path in candidate_paths():
        try:
            library = ctypes.CDLL(str(path))
        except OSError as error:
            tried.append(f"  {path}: {error}")
            continue
        library.trm_abi_version.argtypes = []
        library.trm_abi_version.restype = ctypes.c_uint32
        found = library.trm_abi_version()
        if found != ABI_VERSION:
            raise ImportError(
                f"trmask: {path} implements ABI version {found}, but this Python package needs "
                f"version {ABI_VERSION}. Rebuild the library with `make` from the same checkout."
            )
        return library
    raise ImportError(
        "trmask: cannot load the shared library. Tried:\n" + "\n".join(tried)
        + "\nBuild it with `make` at the repository root, or set TRMASK_LIBRARY to its path."
    )
