"""Benchmark of the exact per-position KL from logits (semantics §6): `python bench/exact_kl.py [--quick]`.

Rows: variant, dtype, threads, ns per position, GB/s over the bytes the kernel must read
(``N * V * (size(a) + size(b))``), the ratio to a read-bandwidth probe over the same bytes, and
the speed-up over torch eager (``log_softmax`` twice and the KL sum) and over numpy doing the same.

The probe is a C loop compiled here with ``gcc -O3 -march=x86-64-v3`` (AVX2): it reads both
arrays once, 32 bytes per load, and XORs them into a register (so nothing is optimised away).
That is the time any exact-KL kernel needs at least on this machine. Every measurement is the
best of a few runs (torch and numpy: one), all in this process, so ratios are measured in the
same conditions. The top-k row reads only the training logits; its ratios use the same
denominators as the other rows of its dtype (so its "x probe" is over twice its bytes).

Data: rollout logits ``a ~ N(0, 2^2)`` with one peaked token per position, training logits
``b = a + N(0, 0.02^2)`` (the engine mismatch the exact TRM watches), ``N = 2048``,
``V = 151936`` (Qwen's vocabulary); ``--quick`` uses ``N = 256``.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
import trmask  # noqa: E402

import machine  # noqa: E402  (bench/machine.py, next to this file)

PROBE_C = r"""
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
uint64_t probe(const uint8_t *a, const uint8_t *b, size_t bytes) {
    __m256i x0 = _mm256_setzero_si256(), x1 = x0, x2 = x0, x3 = x0;
    for (size_t i = 0; i + 128 <= bytes; i += 128) {
        x0 = _mm256_xor_si256(x0, _mm256_loadu_si256((const __m256i *)(a + i)));
        x1 = _mm256_xor_si256(x1, _mm256_loadu_si256((const __m256i *)(a + i + 32)));
        x2 = _mm256_xor_si256(x2, _mm256_loadu_si256((const __m256i *)(a + i + 64)));
        x3 = _mm256_xor_si256(x3, _mm256_loadu_si256((const __m256i *)(a + i + 96)));
        x0 = _mm256_xor_si256(x0, _mm256_loadu_si256((const __m256i *)(b + i)));
        x1 = _mm256_xor_si256(x1, _mm256_loadu_si256((const __m256i *)(b + i + 32)));
        x2 = _mm256_xor_si256(x2, _mm256_loadu_si256((const __m256i *)(b + i + 64)));
        x3 = _mm256_xor_si256(x3, _mm256_loadu_si256((const __m256i *)(b + i + 96)));
    }
    __m256i x = _mm256_xor_si256(_mm256_xor_si256(x0, x1), _mm256_xor_si256(x2, x3));
    return (uint64_t)_mm256_extract_epi64(x, 0) ^ (uint64_t)_mm256_extract_epi64(x, 3);
}
"""


def build_probe():
    directory = tempfile.mkdtemp(prefix="trmask-probe-")
    source, library = os.path.join(directory, "probe.c"), os.path.join(directory, "probe.so")
    with open(source, "w") as f:
        f.write(PROBE_C)
    subprocess.run(["gcc", "-O3", "-march=x86-64-v3", "-shared", "-fPIC", source, "-o", library], check=True)
    lib = ctypes.CDLL(library)
    lib.probe.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    lib.probe.restype = ctypes.c_uint64
    return lib.probe


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def make_logits(n: int, v: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, v), dtype=np.float32)
    a *= 2
    a[np.arange(n), rng.integers(0, v, n)] += 12
    b = rng.standard_normal((n, v), dtype=np.float32)
    b *= 0.02
    b += a
    return a, b


def torch_eager(torch, a, b):
    lp = torch.log_softmax(a.float(), -1)
    lq = torch.log_softmax(b.float(), -1)
    return (lp.exp() * (lp - lq)).sum(-1)


def numpy_kl(a, b):
    a = a.astype(np.float32, copy=False)
    b = b.astype(np.float32, copy=False)
    ma = a.max(-1, keepdims=True)
    lp = a - ma
    lp -= np.log(np.exp(lp).sum(-1, keepdims=True))
    mb = b.max(-1, keepdims=True)
    lq = b - mb
    lq -= np.log(np.exp(lq).sum(-1, keepdims=True))
    return (np.exp(lp) * (lp - lq)).sum(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 256 instead of 2048")
    parser.add_argument("--threads", default="1,2", help="thread counts of the trmask rows")
    args = parser.parse_args()
    n, v = (256 if args.quick else 2048), 151936
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        torch = None
    try:
        import ml_dtypes
    except ImportError:
        ml_dtypes = None
    probe = build_probe()
    a32, b32 = make_logits(n, v)
    print(f"# exact KL, N = {n}, V = {v}; trmask {trmask.library_version}")
    print(f"# {machine.header()}")
    print(f"{'variant':<24}{'dtype':<10}{'threads':>8}{'ns/pos':>12}{'GB/s':>8}{'x probe':>9}{'x torch':>9}{'x numpy':>9}")
    variants = [("float32", a32, b32)]
    if ml_dtypes is not None:
        variants.append(("bfloat16", a32.astype(ml_dtypes.bfloat16), b32.astype(ml_dtypes.bfloat16)))
    for name, a, b in variants:
        nbytes = a.nbytes + b.nbytes
        t_probe = best(lambda: probe(a.ctypes.data, b.ctypes.data, a.nbytes), 5)
        t_torch = None
        if torch is not None:
            ta = torch.from_numpy(a32) if name == "float32" else torch.from_numpy(a32).bfloat16()
            tb = torch.from_numpy(b32) if name == "float32" else torch.from_numpy(b32).bfloat16()
            t_torch = best(lambda: torch_eager(torch, ta, tb), 1)
            del ta, tb
        t_numpy = best(lambda: numpy_kl(a, b), 1) if name == "float32" or not args.quick else None

        def row(variant, threads, seconds):
            ratio_torch = f"{t_torch / seconds:9.1f}" if t_torch else f"{'-':>9}"
            ratio_numpy = f"{t_numpy / seconds:9.1f}" if t_numpy else f"{'-':>9}"
            print(f"{variant:<24}{name:<10}{threads:>8}{seconds / n * 1e9:12.0f}{nbytes / seconds / 1e9:8.1f}"
                  f"{seconds / t_probe:9.2f}{ratio_torch}{ratio_numpy}", flush=True)

        row("read probe (C, AVX2)", 1, t_probe)
        if t_torch:
            row("torch eager", 1, t_torch)
        if t_numpy:
            row("numpy", 1, t_numpy)
        for threads in [int(x) for x in args.threads.split(",")]:
            row("trmask.exact_kl", threads, best(lambda: trmask.exact_kl(b, a, threads=threads), 5))
        row("exact_kl + token logp", 1, best(lambda: trmask.exact_kl(b, a, token_ids=np.zeros(n, dtype=np.int64), threads=1), 3))
        row("exact_kl + tv", 1, best(lambda: trmask.exact_kl(b, a, tv=True, threads=1), 3))
        if name == "float32":
            lp, ids = np.full((n, 8), -3.0), np.tile(np.arange(8), (n, 1))
            row("topk_kl_lower_bound k=8", 1, best(lambda: trmask.topk_kl_lower_bound(b, lp, ids, threads=1), 3))


if __name__ == "__main__":
    main()
