"""Issue 13 (C ABI hardening): the regression cases of Tests/cabi/regressions.c against the loaded
library, one pytest case each, each call in a child process (the C program forks), so that a trap
fails its case instead of killing the suite; TRM_E_TOO_LARGE through the Python layer; and `out=`
given as an ndarray subclass. `make test-regressions` also runs the cases against a debug build,
`make sanitize-asan` under AddressSanitizer."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import trmask
from conftest import ROOT
from trmask import _api

REGRESSIONS = ROOT / "Tests" / "cabi" / "regressions.c"
CASES = re.findall(r'^\s*\{"([a-z0-9_]+)", [a-z0-9_]+, TRM_[A-Z_]+\},$', REGRESSIONS.read_text(), flags=re.M)


@pytest.fixture(scope="module")
def regressions(tmp_path_factory):
    if shutil.which("cc") is None:
        pytest.skip("cc is not installed")
    library = Path(trmask.get_library())  # the library this run loaded (a CPU variant's, or the override)
    binary = tmp_path_factory.mktemp("regressions") / "regressions"
    subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{trmask.get_include()}", str(REGRESSIONS),
                    str(library), f"-Wl,-rpath,{library.parent}", "-lm", "-o", str(binary)], check=True)
    return binary


def test_every_issue_example_has_a_case():
    assert len(CASES) == 28 and len(set(CASES)) == len(CASES)  # 23 for the issue, 5 the fuzzer found


@pytest.mark.parametrize("case", CASES)
def test_regression_case(regressions, case):
    run = subprocess.run([str(regressions), case], capture_output=True, text=True, timeout=600,
                         env={"SWIFT_BACKTRACE": "enable=no"})
    assert run.returncode == 0 and f"ok   {case}" in run.stdout, run.stdout + run.stderr


def test_too_large_is_a_trmask_error_with_a_hint():
    code = 25
    assert trmask._ffi.lib.trm_status_name(code) == b"TRM_E_TOO_LARGE"
    with pytest.raises(trmask.TrmaskError, match="split the batch") as error:
        _api.raise_for_status(code, "trust_region_mask")
    assert error.value.status == code and error.value.status_name == "TRM_E_TOO_LARGE"


def _deltas():
    return np.linspace(-0.5, 0.5, 12, dtype=np.float32).reshape(3, 4)


def test_out_may_be_a_memmap(tmp_path):
    log_ratio = _deltas()
    expected = trmask.token_values(log_ratio=log_ratio, estimator="k2")
    out = np.memmap(tmp_path / "values.bin", dtype=np.float32, mode="w+", shape=(3, 4))
    assert trmask.token_values(log_ratio=log_ratio, estimator="k2", out=out) is out
    assert np.array_equal(np.asarray(out), expected)
    weights = np.memmap(tmp_path / "weights.bin", dtype=np.float32, mode="w+", shape=(3, 4))
    assert trmask.importance_weights(log_ratio=log_ratio, hi=2.0, out=weights) is weights
    assert np.array_equal(np.asarray(weights), trmask.importance_weights(log_ratio=log_ratio, hi=2.0))


def test_out_may_not_be_a_masked_array():
    log_ratio = _deltas()
    out = np.ma.MaskedArray(np.zeros((3, 4), np.float32), mask=np.eye(3, 4, dtype=bool))
    with pytest.raises(trmask.TrmaskError, match="masked array"):
        trmask.token_values(log_ratio=log_ratio, out=out)
    with pytest.raises(trmask.TrmaskError, match="masked array"):
        trmask.importance_weights(log_ratio=log_ratio, hi=2.0, out=out)
    assert (out.data == 0).all()


def test_out_subclass_with_torch_imported():
    """The torch path once took every non-ndarray-exact object (AttributeError: data_ptr)."""
    pytest.importorskip("torch")

    class Tagged(np.ndarray):
        pass

    log_ratio = _deltas()
    out = np.zeros((3, 4), np.float32).view(Tagged)
    assert trmask.token_values(log_ratio=log_ratio, estimator="abs", out=out) is out
    assert np.array_equal(out.view(np.ndarray), np.abs(log_ratio))
