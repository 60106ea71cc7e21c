"""CPU variants (one build of the same sources per x86-64 level): the loader's choice, its refusals
naming the missing features (never a SIGILL), `trmask --version`, and bit-identical outputs from
every variant this CPU runs. Variants the CPU lacks are skipped with the reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import trmask
from trmask import _loader

HERE = Path(__file__).resolve().parent
VARIANTS = _loader.VARIANTS if _loader.has_variants() else ()
pytestmark = pytest.mark.skipif(not VARIANTS, reason="one build on this machine (variants are x86-64 only)")


def _run(variant: _loader.Variant, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRMASK_LIBRARY"}
    env["TRMASK_VARIANT"] = variant.name
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=600)


def _runnable(variant: _loader.Variant) -> _loader.Variant:
    reason = _loader.unsupported_reason(variant)
    if reason:
        pytest.skip(reason)
    return variant


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_forced_variant_loads_and_says_so(variant):
    _runnable(variant)
    run = _run(variant, "-m", "trmask", "--version")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == f"trmask {trmask.__version__} (ABI version {_loader.ABI_VERSION})"
    library = Path(lines[1].removeprefix("library: "))
    assert library.parent.name == variant.isa and library.parent.parent.name == "glibc-hwcaps"
    assert lines[2] == f"variant: {variant.isa} (forced by TRMASK_VARIANT={variant.name})"
    assert lines[3] == f"CPU features the build uses: {variant.feature_names()}"


def test_the_best_variant_this_cpu_runs_is_chosen(monkeypatch):
    monkeypatch.delenv("TRMASK_LIBRARY", raising=False)
    monkeypatch.delenv("TRMASK_VARIANT", raising=False)
    best = next(v for v in VARIANTS if not _loader.missing_features(v))
    assert _loader.choose() == best.path
    monkeypatch.setattr(_loader, "cpu_flags", lambda: frozenset(flag for flag, _ in _loader.VARIANTS[-1].features))
    assert _loader.choose() == _loader.VARIANTS[-1].path


def test_variants_the_cpu_lacks_are_refused_before_loading(monkeypatch):
    monkeypatch.delenv("TRMASK_LIBRARY", raising=False)
    v4, v3 = _loader.variant_named("v4"), _loader.variant_named("v3")
    v3_only = frozenset(flag for flag, _ in v3.features)
    monkeypatch.setattr(_loader, "cpu_flags", lambda: v3_only)
    monkeypatch.setenv("TRMASK_VARIANT", "v4")
    with pytest.raises(ImportError, match=r"TRMASK_VARIANT=v4: the x86-64-v4 build of trmask needs AVX512F, "
                                          r"AVX512BW, AVX512CD, AVX512DQ, AVX512VL, which this CPU lacks"):
        _loader.choose()
    # A CPU without AVX2 and FMA (a pre-2013 x86-64, or a VM hiding them): no variant at all.
    monkeypatch.delenv("TRMASK_VARIANT")
    monkeypatch.setattr(_loader, "cpu_flags", lambda: v3_only - {"avx2", "fma"})
    with pytest.raises(ImportError, match=r"x86-64-v3 build of trmask needs AVX2, FMA, which this CPU lacks"):
        _loader.choose()
    # An override inside the variant folders is checked too.
    monkeypatch.setattr(_loader, "cpu_flags", lambda: v3_only)
    monkeypatch.setenv("TRMASK_LIBRARY", str(v4.path))
    with pytest.raises(ImportError, match=r"TRMASK_LIBRARY=.*x86-64-v4/libtrmask.so: the x86-64-v4 build"):
        _loader.choose()
    monkeypatch.setenv("TRMASK_LIBRARY", "/elsewhere/libtrmask.so")
    assert _loader.choose() == Path("/elsewhere/libtrmask.so")


def test_an_unknown_variant_name_is_refused(monkeypatch):
    monkeypatch.delenv("TRMASK_LIBRARY", raising=False)
    monkeypatch.setenv("TRMASK_VARIANT", "v5")
    with pytest.raises(ImportError, match=r"TRMASK_VARIANT='v5' names no variant; use v4 or v3"):
        _loader.choose()


def test_every_variant_gives_bit_identical_outputs():
    """SHA-256 of the mask, token values, weights, metrics and exact-KL outputs on a spread of
    inputs (variant_digest.py), per variant; all must be equal."""
    runnable = [v for v in VARIANTS if _loader.unsupported_reason(v) is None]
    if len(runnable) < 2:
        pytest.skip("; ".join(_loader.unsupported_reason(v) for v in VARIANTS if v not in runnable))
    digests = {}
    for variant in runnable:
        run = _run(variant, str(HERE / "variant_digest.py"))
        assert run.returncode == 0, run.stderr
        digests[variant.name] = json.loads(run.stdout)
    first, *others = runnable
    for other in others:
        differing = [case for case in digests[first.name] if digests[first.name][case] != digests[other.name].get(case)]
        assert not differing, f"{first.name} and {other.name} differ on {len(differing)} cases, e.g. {differing[:5]}"
    assert len(digests[first.name]) > 500
