"""The installed package (`make test` runs this suite against the wheel installed in a fresh venv,
with TRMASK_TEST_INSTALLED naming that venv): the tests import it, not python/trmask; the wheel's
header, library, py.typed and metadata; one version everywhere."""

from __future__ import annotations

import importlib.metadata
import os
import re
from pathlib import Path

import pytest

import trmask
from conftest import ROOT
from trmask import _loader

INSTALLED = os.environ.get("TRMASK_TEST_INSTALLED")
PACKAGE = Path(trmask.__file__).resolve().parent
installed_only = pytest.mark.skipif(not INSTALLED, reason="running against the source tree (PYTHONPATH=python); "
                                                          "`make test` runs the suite against the installed wheel")


@installed_only
def test_the_tests_import_the_installed_package():
    assert PACKAGE.is_relative_to(Path(INSTALLED).resolve()), f"trmask imported from {PACKAGE}, not from {INSTALLED}"
    assert not PACKAGE.is_relative_to(ROOT), f"trmask imported from the checkout: {PACKAGE}"


@installed_only
def test_the_wheel_carries_header_library_and_typing_marker():
    assert Path(trmask.get_include()) == PACKAGE / "include"
    assert (PACKAGE / "include" / "trmask.h").read_bytes() == (ROOT / "include" / "trmask.h").read_bytes()
    assert (PACKAGE / "py.typed").is_file()
    assert Path(trmask.get_library()).is_relative_to(PACKAGE / "_lib")
    assert importlib.metadata.version("trmask") == trmask.__version__


def test_one_version_everywhere():
    header = (Path(trmask.get_include()) / "trmask.h").read_text()
    major, minor, patch, text = (re.search(rf"#define TRM_VERSION_{key} (\S+)", header).group(1)
                                 for key in ("MAJOR", "MINOR", "PATCH", "STRING"))
    assert text == f'"{major}.{minor}.{patch}"'
    assert trmask.__version__ == trmask._lib.trm_version().decode() == text.strip('"')
    pyproject = (ROOT / "python" / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and not re.search(r"^version\s*=", pyproject, flags=re.M)


def test_the_python_package_license_is_the_repository_license():
    """python/LICENSE is a copy (the wheel and the sdist take their license file from python/)."""
    assert (ROOT / "python" / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes()


def test_paths_for_c_programs():
    library = Path(trmask.get_library())
    assert library.is_file() and (Path(trmask.get_include()) / "trmask.h").is_file()
    if not os.environ.get("TRMASK_LIBRARY"):
        assert library == _loader.choose().resolve()
        if _loader.has_variants():
            assert library.parent.parent == Path(trmask.get_library_dir()) / "glibc-hwcaps"
