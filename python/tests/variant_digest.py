"""Prints SHA-256 digests of trmask's outputs on a spread of inputs, as JSON (one per case), for
the library this process loads: test_variants.py runs it once per CPU variant (TRMASK_VARIANT)
and requires equal digests. The inputs cover vector bodies and tails, every float dtype, strided,
transposed and reversed views, NaN/Inf, empty rows, packed rows, one and two threads."""

from __future__ import annotations

import hashlib
import json

import ml_dtypes
import numpy as np

import trmask
from conftest import random_deltas

CRITERIA = ["max:k2<=0.1,mean:k3<=0.002", "-0.2<=token:delta<=0.2,mean:tv<=0.05,sum:k1<=3,min:ratio>=0.5",
            "ln_trm(kl_max=0.01):tv<=0.03,ser:tv<=0.05"]


def digest(*arrays) -> str:
    h = hashlib.sha256()
    for array in arrays:
        if isinstance(array, dict):
            h.update(json.dumps({k: repr(v) for k, v in sorted(array.items())}).encode())
        elif array is not None:
            array = np.ascontiguousarray(array)
            h.update(str((array.dtype, array.shape)).encode() + array.tobytes())
    return h.hexdigest()


def batches():
    rng = np.random.default_rng(16)
    for rows, cols in [(1, 1), (3, 17), (5, 64), (9, 1000), (33, 4099)]:
        logp_roll = rng.normal(-1.0, 1.0, size=(rows, cols))
        for special in (False, True):
            logp_train = logp_roll + random_deltas(rng, (rows, cols), special)
            mask = rng.random((rows, cols)) < 0.9
            mask[rows // 2] = False  # one empty row
            for dtype in (np.float32, ml_dtypes.bfloat16, np.float16, np.float64):
                yield f"{rows}x{cols} {np.dtype(dtype).name} special={special}", \
                    logp_train.astype(dtype), logp_roll.astype(dtype), mask
    logp_roll = rng.normal(-1.0, 1.0, size=(600, 40)).astype(np.float32)
    logp_train = logp_roll + random_deltas(rng, logp_roll.shape, True).astype(np.float32)
    yield "transposed", logp_train.T, logp_roll.T, None
    yield "reversed", logp_train[::-1, ::-2], logp_roll[::-1, ::-2], None


def main() -> None:
    out = {}
    for name, logp_train, logp_roll, mask in batches():
        for threads in (1, 2):
            for criteria in CRITERIA:
                r = trmask.trust_region_mask(logp_train, logp_roll, mask, criteria=criteria, threads=threads,
                                             weights=trmask.WeightRule("sequence", "truncate", hi=2.0), metrics=True)
                out[f"mask {name} threads={threads} {criteria}"] = digest(
                    r.keep_row, r.keep_token, r.count, r.nonfinite, np.array(r.rejected), *r.row_stats, r.weights,
                    r.metrics)
            for estimator in ("k1", "k2", "k3", "tv", "ratio", "abs"):
                out[f"token_values {name} threads={threads} {estimator}"] = digest(
                    trmask.token_values(logp_train, logp_roll, estimator, threads=threads))
    rng = np.random.default_rng(61)
    for n, vocab in [(1, 7), (13, 1000), (37, 4096 + 129)]:
        a = rng.normal(0.0, 3.0, size=(n, vocab)).astype(np.float32)
        b = a + rng.normal(0.0, 0.3, size=a.shape).astype(np.float32)
        a[0, : min(3, vocab)] = -np.inf
        ids = rng.integers(0, vocab, size=n)
        for dtype in (np.float32, ml_dtypes.bfloat16, np.float16):
            for threads in (1, 2):
                r = trmask.exact_kl(a.astype(dtype), b.astype(dtype), temperature=0.7, token_ids=ids, tv=True,
                                    threads=threads)
                out[f"exact_kl {n}x{vocab} {np.dtype(dtype).name} threads={threads}"] = digest(
                    r.kl, r.tv, r.logp_roll_token, r.logp_train_token)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
