"""The shared library's surface: exported symbols equal the header's functions, the header builds
as C99 and C++ with warnings as errors, the C example runs, the library loads without the Swift
toolchain, and the loader's override and error messages."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import trmask
from conftest import ROOT
from trmask import _loader

# The installed (or source-tree) header and the library this process loaded (its CPU variant).
LIBRARY = Path(trmask.get_library())
HEADER = Path(trmask.get_include()) / "trmask.h"
EXAMPLE = ROOT / "examples" / "c" / "trmask_example.c"


def _declared_functions() -> set:
    text = re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)
    return set(re.findall(r"\b(trm_[a-z0-9_]+)\s*\(", text))


@pytest.mark.skipif(shutil.which("nm") is None, reason="nm is not installed")
def test_exported_symbols_are_exactly_the_header_functions():
    listing = subprocess.run(["nm", "-D", "--defined-only", str(LIBRARY)], capture_output=True, text=True, check=True)
    # Every defined dynamic symbol, local ones included: the table holds the C ABI and nothing else.
    exported = {line.split()[-1] for line in listing.stdout.splitlines()}
    assert exported == _declared_functions()


@pytest.mark.parametrize("compiler,flags", [("cc", ["-std=c99", "-pedantic"]), ("c++", ["-std=c++11", "-pedantic", "-x", "c++"])])
def test_c_example_builds_and_runs(tmp_path, compiler, flags):
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed")
    binary = tmp_path / "example"
    subprocess.run([compiler, *flags, "-Wall", "-Wextra", "-Werror", f"-I{HEADER.parent}", str(EXAMPLE),
                    f"-L{LIBRARY.parent}", "-ltrmask", f"-Wl,-rpath,{LIBRARY.parent}", "-lm", "-o", str(binary)],
                   check=True, capture_output=True, text=True)
    run = subprocess.run([str(binary)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "row 1: keep=0" in run.stdout and "row 0: keep=1" in run.stdout
    assert "refused: TRM_E_BAD_THRESHOLD" in run.stdout


def test_library_needs_no_swift_toolchain():
    """Loads in a clean environment, with only libc, libm, libstdc++ and libgcc_s."""
    if shutil.which("ldd"):
        deps = subprocess.run(["ldd", str(LIBRARY)], capture_output=True, text=True, check=True).stdout
        assert "swift" not in deps.lower(), deps
    run = subprocess.run(["env", "-i", sys.executable, "-c",
                          f"import ctypes; print(ctypes.CDLL({str(LIBRARY)!r}).trm_abi_version())"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == str(_loader.ABI_VERSION), run.stderr


def test_loader_override_and_error_message(tmp_path):
    env = {**os.environ, "TRMASK_LIBRARY": str(tmp_path / "missing.so")}
    run = subprocess.run([sys.executable, "-c", "import trmask"], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode != 0
    assert "cannot load the shared library" in run.stderr and "missing.so" in run.stderr
    env["TRMASK_LIBRARY"] = str(LIBRARY)
    run = subprocess.run([sys.executable, "-c", "import trmask; print(trmask.library_version)"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == trmask.__version__, run.stderr
