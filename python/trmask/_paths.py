"""Where the installed header and library are, for C, C++ and Rust programs built against an
installed trmask (as numpy's ``get_include()``): docs/c-abi.md shows the compiler flags."""

from __future__ import annotations

from pathlib import Path

from . import _loader
from ._ffi import lib as _lib

_PACKAGE = Path(__file__).resolve().parent


def get_include() -> str:
    """The folder holding ``trmask.h`` (for ``-I``): the wheel's copy, or ``include/`` of the source
    checkout this package runs from."""
    packaged = _PACKAGE / "include"
    return str(packaged if (packaged / "trmask.h").is_file() else _PACKAGE.parent.parent / "include")


def get_library() -> str:
    """The path of the shared library this process loaded (the CPU variant the loader chose)."""
    return str(Path(_lib._name).resolve())


def get_library_dir() -> str:
    """The package's library folder (for ``-Wl,-rpath``): on x86-64 glibc then picks the variant
    folder under it (``glibc-hwcaps/x86-64-v4`` or ``x86-64-v3``) by CPU features, as this package's
    loader does."""
    return str(_loader.LIBRARY_DIR)
