"""Exhaustive check of the exponential estimators over every float32 (semantics §2): monotone in
|delta| on each side of 0 (k3, tv; ratio in delta), and the worst relative error against float64
where the exact value is a normal float32. Minutes, not a test: `python bench/verify_estimators.py`.
Results are recorded in docs/accuracy.md."""

from __future__ import annotations

import sys
import time

import numpy as np

import trmask
from trmask.reference import estimator_values

CHUNK = 1 << 25


def positive_floats():
    """All finite positive float32 values in increasing order, in chunks (with one value of
    overlap so monotonicity is checked across chunk borders)."""
    top = int(np.float32(np.finfo(np.float32).max).view(np.uint32))
    start = 0
    while start <= top:
        stop = min(start + CHUNK, top + 1)
        yield np.arange(max(start - 1, 0), stop, dtype=np.uint32).view(np.float32)
        start = stop


def main() -> int:
    failures = 0
    for estimator in ("k3", "tv", "ratio"):
        began = time.time()
        worst = (0.0, 0.0)
        for sign in (1.0, -1.0):
            for chunk in positive_floats():
                deltas = (chunk * np.float32(sign)).astype(np.float32)
                got = trmask.token_values(log_ratio=deltas, estimator=estimator)
                # Compare neighbours directly (inf -> inf is fine; np.diff would give NaN).
                rising = got[1:] >= got[:-1] if (estimator != "ratio" or sign > 0) else got[1:] <= got[:-1]
                if not rising.all():
                    bad = np.flatnonzero(~rising)[0]
                    print(f"{estimator}: not monotone between {deltas[bad]!r} and {deltas[bad + 1]!r}: "
                          f"{got[bad]!r} -> {got[bad + 1]!r}")
                    failures += 1
                ref = estimator_values(estimator, deltas.astype(np.float64))
                normal = (np.abs(ref) >= np.finfo(np.float32).tiny) & (np.abs(ref) <= np.finfo(np.float32).max)
                error = np.abs(got[normal] - ref[normal]) / np.abs(ref[normal])
                if error.size and error.max() > worst[0]:
                    worst = (float(error.max()), float(deltas[normal][np.argmax(error)]))
        print(f"{estimator}: all {2 * (int(np.finfo(np.float32).max.view(np.uint32)) + 1)} finite float32 deltas; "
              f"monotone: {'yes' if not failures else 'NO'}; worst relative error {worst[0]:.3g} at delta {worst[1]!r} "
              f"({time.time() - began:.0f} s)")
        sys.stdout.flush()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
