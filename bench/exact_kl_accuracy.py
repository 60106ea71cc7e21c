"""Worst error of `trmask.exact_kl` against the float64 reference on the hard cases of semantics §6:
`python bench/exact_kl_accuracy.py`. Prints, per case, the largest ``|KL - ref|`` (of both
paths), the largest ``|KL - ref| / (1e-4 ref + 1e-8)`` (the contract holds when it is <= 1) with
TV asked (exact float64 ``a - b``) and for the KL alone (float32 ``a - b`` where provably
accurate), and ``|TV - ref| / (1e-5 ref + 1e-8)``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
import trmask  # noqa: E402
from trmask.reference import reference_exact_kl  # noqa: E402

try:
    import ml_dtypes
except ImportError:
    ml_dtypes = None


def cases():
    rng = np.random.default_rng(0)
    v = 151936
    a = (rng.standard_normal((8, v)) * 3).astype(np.float32)
    yield "identical", a, a.copy(), 1.0
    yield "shift +7.25", a, a + np.float32(7.25), 1.0
    yield "shift -40 + noise 1e-3", a, (a - 40 + rng.normal(0, 1e-3, a.shape)).astype(np.float32), 1.0
    yield "shift +3 + noise 0.01 (fast a-b)", a, (a + 3 + rng.normal(0, 0.01, a.shape)).astype(np.float32), 1.0
    yield "shift +3 + noise 1e-4, tau 0.9", a, (a + 3 + rng.normal(0, 1e-4, a.shape)).astype(np.float32), 0.9
    yield "one ulp apart", a, np.nextafter(a, np.float32(np.inf)), 1.0
    yield "noise 1e-6", a, (a + rng.normal(0, 1e-6, a.shape)).astype(np.float32), 1.0
    yield "noise 1e-4", a, (a + rng.normal(0, 1e-4, a.shape)).astype(np.float32), 1.0
    yield "noise 0.02, tau 0.6", a, (a + rng.normal(0, 0.02, a.shape)).astype(np.float32), 0.6
    one = np.zeros((2, 20000), dtype=np.float32)
    one[:, 0] = 1
    other = one.copy()
    other[0, 0], other[1, -1] = 2, 0.5
    yield "one token differs", one, other, 1.0
    big = rng.uniform(-60, 60, (3, 262144)).astype(np.float32)
    yield "V=262144 |x|<=60 noise 1e-3", big, np.clip(big + rng.normal(0, 1e-3, big.shape), -60, 60).astype(np.float32), 1.0
    yield "V=262144 |x|<=60 independent", big, rng.uniform(-60, 60, big.shape).astype(np.float32), 1.0
    masked = a[:4].copy()
    masked[:, 1000:60000] = -np.inf
    yield "-inf run on both, noise 0.01", masked, np.where(np.isinf(masked), masked, masked + rng.normal(0, 0.01, masked.shape)).astype(np.float32), 1.0
    if ml_dtypes is not None:
        bf = a.astype(ml_dtypes.bfloat16)
        yield "bf16 rollout vs f32 train", bf, a, 1.0
        yield "bf16 vs bf16 noise 0.05", bf, (a + rng.normal(0, 0.05, a.shape)).astype(ml_dtypes.bfloat16), 1.0


def main() -> None:
    print(f"{'case':<34}{'max |dKL|':>12}{'KL/bound':>10}{'KL only':>10}{'max |dTV|':>12}{'TV/bound':>10}"
          f"{'ref KL range':>26}")
    for name, a, b, t in cases():
        got = trmask.exact_kl(b, a, temperature=t, tv=True)
        ref = reference_exact_kl(np.asarray(b).astype(np.float64), np.asarray(a).astype(np.float64), temperature=t)
        dkl = np.abs(got.kl.astype(np.float64) - ref["kl"])
        alone = trmask.exact_kl(b, a, temperature=t).kl  # the float32-difference fast path
        dkl_alone = np.abs(alone.astype(np.float64) - ref["kl"])
        dtv = np.abs(got.tv.astype(np.float64) - ref["tv"])
        print(f"{name:<34}{max(dkl.max(), dkl_alone.max()):12.2e}{(dkl / (1e-4 * ref['kl'] + 1e-8)).max():10.3f}"
              f"{(dkl_alone / (1e-4 * ref['kl'] + 1e-8)).max():10.3f}"
              f"{dtv.max():12.2e}{(dtv / (1e-5 * ref['tv'] + 1e-8)).max():10.3f}"
              f"{ref['kl'].min():13.2e}{ref['kl'].max():13.2e}", flush=True)


if __name__ == "__main__":
    main()
