"""trmask benchmark: speed as ratios measured in one run (`make bench`; not a test).

Every row times one variant on the same data, interleaved with the others and repeated; the
median is reported. Baselines measured in the same run:
- probe: a read-only pass over the same bytes (bench/probe.c, gcc -O3 -march=x86-64-v3), same
  threads: the memory limit;
- numpy: the natural numpy pipeline computing the same outputs (count, max k2, mean k3, keep);
- torch: the same in torch eager (same thread count), if torch is installed;
- C loop: one scalar pass per row with expm1f (bench/probe.c), same threads.

    python bench/bench.py              # 2M tokens, 1 and 2 threads
    python bench/bench.py --large      # adds 64M tokens (B=4096, T=16384; ~2.5 GB of RAM)
"""

from __future__ import annotations

import argparse
import ctypes
import os

# torch's OpenMP workers spin after each parallel region by default and steal the other core from
# whatever runs next in the interleaved measurements: make them sleep instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import machine
import trmask

HERE = Path(__file__).resolve().parent
TRM = "max:k2<=0.1,mean:k3<=0.002"


def build_c_baselines() -> ctypes.CDLL:
    out = Path(tempfile.mkdtemp()) / "probe.so"
    arch = ["-march=x86-64-v3"] if platform.machine() == "x86_64" else []
    subprocess.run(["gcc", "-O3", *arch, "-shared", "-fPIC", "-pthread", str(HERE / "probe.c"), "-o", str(out), "-lm"],
                   check=True)
    lib = ctypes.CDLL(str(out))
    p = ctypes.c_void_p
    lib.probe.argtypes = [p, p, p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int]
    lib.probe.restype = ctypes.c_uint64
    lib.fused.argtypes = [p, p, p, ctypes.c_int64, ctypes.c_int64, p, ctypes.c_int]
    lib.fused.restype = None
    lib.probe_streams.argtypes = [p, p, ctypes.c_int, ctypes.c_int64, ctypes.c_int]
    lib.probe_streams.restype = ctypes.c_uint64
    lib.probe_copy.argtypes = [p, p, ctypes.c_int, p, p, ctypes.c_int, ctypes.c_int64, ctypes.c_int]
    lib.probe_copy.restype = None
    return lib


def _address(a) -> int:
    return a.data_ptr() if hasattr(a, "data_ptr") else a.ctypes.data


def _nbytes(a) -> int:
    return a.numel() * a.element_size() if hasattr(a, "numel") else a.nbytes


def _streams(arrays, rows: int) -> tuple:
    """The base addresses and the bytes per row of `arrays`, as probe.c takes them."""
    pointers = (ctypes.c_void_p * len(arrays))(*[_address(a) for a in arrays])
    row_bytes = (ctypes.c_int64 * len(arrays))(*[_nbytes(a) // rows for a in arrays])
    return pointers, row_bytes


def stream_probe(clib, arrays, rows: int, threads: int):
    """A read probe over exactly the bytes of `arrays` (C-contiguous numpy arrays or torch
    tensors), each cut into `rows` equal rows."""
    pointers, row_bytes = _streams(arrays, rows)
    return lambda: clib.probe_streams(pointers, row_bytes, len(arrays), rows, threads)


def copy_probe(clib, inputs, outputs, rows: int, threads: int):
    """A read+write probe: reads exactly the bytes of `inputs` and writes exactly those of
    `outputs` (C-contiguous, each cut into `rows` equal rows), row by row, same threads."""
    ins, in_bytes = _streams(inputs, rows)
    outs, out_bytes = _streams(outputs, rows)
    return lambda: clib.probe_copy(ins, in_bytes, len(inputs), outs, out_bytes, len(outputs), rows, threads)


def bfloat16(x: np.ndarray, torch):
    """`x` as bfloat16 (ml_dtypes, else torch), or None when neither is installed."""
    try:
        import ml_dtypes
        return x.astype(ml_dtypes.bfloat16)
    except ImportError:
        return None if torch is None else torch.from_numpy(x).to(torch.bfloat16)


def make_batch(rows: int, cols: int, seed: int = 0):
    """Realistic mismatch: log-probs of sampled tokens, small noise, rare spikes, ragged rows."""
    rng = np.random.default_rng(seed)
    lr = -rng.exponential(0.35, size=(rows, cols)).astype(np.float32)
    noise = rng.standard_normal(size=(rows, cols), dtype=np.float32) * np.float32(0.01)
    lt = lr + noise
    spikes = rng.random((rows, cols), dtype=np.float32) < 2e-4
    lt[spikes] += rng.normal(0, 1.0, int(spikes.sum())).astype(np.float32)
    lengths = rng.integers(cols // 2, cols + 1, size=rows)
    mask = (np.arange(cols)[None, :] < lengths[:, None]).astype(np.uint8)
    return lt, lr, mask


def numpy_trm(lt, lr, mask):
    d = lt - lr
    valid = mask != 0
    count = valid.sum(axis=1)
    max_k2 = np.where(valid, np.float32(0.5) * d * d, np.float32(0)).max(axis=1)
    k3 = np.expm1(d) - d  # the natural float32 pipeline (it cancels near 0; see BENCHMARKS.md)
    mean_k3 = np.where(valid, k3, np.float32(0)).sum(axis=1, dtype=np.float64) / np.maximum(count, 1)
    return (max_k2 <= 0.1) & (mean_k3 <= 0.002)


def torch_trm(torch, lt, lr, mask):
    d = lt - lr
    valid = mask != 0
    count = valid.sum(dim=1)
    max_k2 = torch.where(valid, 0.5 * d * d, torch.zeros((), dtype=d.dtype)).amax(dim=1)
    k3 = torch.expm1(d) - d
    mean_k3 = torch.where(valid, k3, torch.zeros((), dtype=d.dtype)).sum(dim=1, dtype=torch.float64) / count.clamp(min=1)
    return (max_k2 <= 0.1) & (mean_k3 <= 0.002)


def timed(fn, repeat: int, warm: bool = True) -> list:
    if warm:
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def interleaved(variants: dict, repeat: int, warm: bool = True) -> dict:
    """Median seconds per variant, the variants taking turns so machine noise hits all alike.
    `warm`: each timed call follows an untimed call of the same variant, so inputs that fit in the
    cache are in it (the other variants' temporaries would otherwise evict them)."""
    for fn in variants.values():
        fn()
    samples = {name: [] for name in variants}
    for _ in range(repeat):
        for name, fn in variants.items():
            if warm:
                fn()
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


class Table:
    def __init__(self):
        self.rows = []
        print(f"{'case':<34} {'layout':<14} {'thr':>3} {'ns/token':>9} {'x probe':>8} {'vs numpy':>9} {'vs torch':>9} {'vs C loop':>9}")

    def add(self, case, layout, threads, seconds, tokens, probe=None, numpy_s=None, torch_s=None, c_s=None):
        def ratio(base, inverse=False):
            if base is None:
                return "-"
            if base == "not installed":
                return "n/a"
            return f"{(base / seconds if inverse else seconds / base):.2f}x"
        line = (f"{case:<34} {layout:<14} {threads:>3} {seconds / tokens * 1e9:>9.3f} {ratio(probe):>8} "
                f"{ratio(numpy_s, True):>9} {ratio(torch_s, True):>9} {ratio(c_s, True):>9}")
        print(line, flush=True)
        self.rows.append(line)


def trm_default(table, clib, torch, rows, cols, threads_list, repeat, label):
    lt, lr, mask = make_batch(rows, cols)
    tokens = rows * cols
    keep = np.empty(rows, np.uint8)
    ptrs = (lt.ctypes.data, lr.ctypes.data, mask.ctypes.data)
    warm = tokens <= 1 << 22
    np_s = interleaved({"numpy": lambda: numpy_trm(lt, lr, mask)}, max(3, repeat // 3), warm)["numpy"]
    for threads in threads_list:
        variants = {
            "trmask": lambda: trmask.trust_region_mask(lt, lr, mask, criteria=TRM, threads=threads),
            "probe": lambda: clib.probe(*ptrs, rows, cols, threads),
            "cloop": lambda: clib.fused(*ptrs, rows, cols, keep.ctypes.data, threads),
        }
        if torch is not None:
            tlt, tlr, tmask = torch.from_numpy(lt), torch.from_numpy(lr), torch.from_numpy(mask)
            torch.set_num_threads(threads)
            variants["torch"] = lambda: torch_trm(torch, tlt, tlr, tmask)
        med = interleaved(variants, repeat, warm)
        table.add(f"TRM default {label}", "contiguous", threads, med["trmask"], tokens, med["probe"], np_s,
                  med.get("torch", "not installed"), med["cloop"])
    return lt, lr, mask


def estimators(table, clib, rows, cols, repeat, label):
    lt, lr, mask = make_batch(rows, cols, seed=1)
    ptrs = (lt.ctypes.data, lr.ctypes.data, mask.ctypes.data)
    for est in ("delta", "k1", "k2", "k3", "abs", "ratio", "tv"):
        criteria = [trmask.Criterion(agg, est) for agg in ("sum", "mean", "max", "min")]
        med = interleaved({"trmask": lambda: trmask.trust_region_mask(lt, lr, mask, criteria=criteria, threads=1),
                           "probe": lambda: clib.probe(*ptrs, rows, cols, 1)}, repeat, rows * cols <= 1 << 22)
        table.add(f"sum/mean/max/min {est} {label}", "contiguous", 1, med["trmask"], rows * cols, med["probe"])


def layouts(table, clib, rows, cols, repeat, label):
    lt, lr, mask = make_batch(rows, cols, seed=2)
    ptrs = (lt.ctypes.data, lr.ctypes.data, mask.ctypes.data)
    column_major = [np.ascontiguousarray(x.T).T for x in (lt, lr, mask)]
    wide = []
    for x in (lt, lr, mask):
        w = np.zeros((rows, 2 * cols), x.dtype)
        w[:, ::2] = x
        wide.append(w[:, ::2])
    reversed_rows = [np.ascontiguousarray(x[:, ::-1])[:, ::-1] for x in (lt, lr, mask)]
    views = {"contiguous": (lt, lr, mask), "column-major": column_major, "every-other": wide,
             "reversed cols": reversed_rows}
    variants = {name: (lambda v=v: trmask.trust_region_mask(*v, criteria=TRM, threads=1)) for name, v in views.items()}
    variants.update({f"numpy {name}": (lambda v=v: numpy_trm(*v)) for name, v in views.items() if name != "contiguous"})
    variants["probe"] = lambda: clib.probe(*ptrs, rows, cols, 1)
    med = interleaved(variants, repeat)
    for name in views:
        table.add(f"TRM default {label}", name, 1, med[name], rows * cols, med["probe"],
                  med.get(f"numpy {name}"))
        if name != "contiguous":
            print(f"{'':<34} {name} / contiguous = {med[name] / med['contiguous']:.2f}x")


def trainer_paths(table, clib, torch, rows, cols, threads_list, repeat, label):
    """The paths of the issue "Everything trainers use", each against a read probe over its own
    input bytes: low-precision and mixed inputs, the packed layout, weights, metrics, the
    length-neutral rules."""
    lt, lr, mask = make_batch(rows, cols, seed=4)
    warm = rows * cols <= 1 << 22
    valid = mask != 0
    offsets = np.concatenate([[0], np.cumsum(valid.sum(axis=1))]).astype(np.int64)
    packed = (np.ascontiguousarray(lt[valid]), np.ascontiguousarray(lr[valid]))
    cases = {}
    lt16, lr16 = bfloat16(lt, torch), bfloat16(lr, torch)
    mask_in = mask if lt16 is None or isinstance(lt16, np.ndarray) else torch.from_numpy(mask)
    if lt16 is not None:
        cases["TRM default bf16"] = ((lt16, lr16, mask_in), {}, (lt16, lr16, mask_in))
        cases["TRM default bf16 vs f32 roll"] = ((lt16, lr if isinstance(lt16, np.ndarray) else torch.from_numpy(lr),
                                                  mask_in), {}, (lt16, lr, mask))
    cases["TRM default packed"] = (packed, {"offsets": offsets}, packed)
    padded = (lt, lr, mask)
    cases["TRM + token weights (TIS)"] = (padded, {"weights": trmask.WeightRule("token", "truncate", hi=2.0)}, padded)
    cases["TRM + sequence weights"] = (padded, {"weights": trmask.WeightRule("sequence", "truncate", hi=2.0)}, padded)
    cases["TRM + metrics"] = (padded, {"metrics": True}, padded)
    cases["max:k2 + SER"] = (padded, {"criteria": "max:k2<=0.1,ser:tv<=0.05"}, padded)
    cases["max:k2 + LN-TRM"] = (padded, {"criteria": "max:k2<=0.1,ln_trm(kl_max=0.01):tv<=0.05"}, padded)
    for threads in threads_list:
        for name, (inputs, kwargs, read) in cases.items():
            kwargs = {"criteria": TRM, **kwargs}
            med = interleaved({"trmask": lambda: trmask.trust_region_mask(*inputs, threads=threads, **kwargs),
                               "probe": stream_probe(clib, read, rows, threads)}, repeat, warm)
            tokens = inputs[0].numel() if hasattr(inputs[0], "numel") else inputs[0].size
            table.add(f"{name} {label}", "contiguous", threads, med["trmask"], tokens, med["probe"])


def torch_bkl_sym_keep(torch, lt, lr, mask, phi=0.1, eps=1e-6):
    """KPop's token mask in torch eager: the binary KL both ways from the clamped probabilities."""
    lo, hi = torch.log(torch.tensor(eps)), torch.log1p(torch.tensor(-eps))
    la, lb = lr.clamp(lo, hi), lt.clamp(lo, hi)
    a, b = la.exp(), lb.exp()
    l1a, l1b = torch.log1p(-a), torch.log1p(-b)
    forward = a * (la - lb) + (1 - a) * (l1a - l1b)
    backward = b * (lb - la) + (1 - b) * (l1b - l1a)
    return (mask != 0) & (torch.maximum(forward, backward) <= phi)


def torch_advantage_keep(torch, lt, lr, mask, adv, low=0.2, high=0.2):
    """DPPO's advantage-conditioned binary-TV mask in torch eager (zero advantage: lower test)."""
    d = lt.exp() - lr.exp()
    a = adv[:, None]
    masked = ((a > 0) & (d > high)) | ((a <= 0) & (d < -low))
    return (mask != 0) & ~masked


def rules2026(table, clib, torch, rows, cols, threads_list, repeat, label):
    """The 2026 rules (docs/rules-2026.md): KPop's bkl_sym token mask (keep_token in the mask's
    own pass) and DPPO's advantage mask, against the read probe over lt, lr and mask and against
    torch eager computing the same token mask."""
    lt, lr, mask = make_batch(rows, cols, seed=6)
    adv = np.random.default_rng(6).standard_normal(rows)
    warm = rows * cols <= 1 << 22
    cases = {
        "bkl_sym token mask": lambda threads: trmask.trust_region_mask(lt, lr, mask, criteria="token:bkl_sym<=0.1",
                                                                      threads=threads).keep_token,
        "advantage_mask bdiff": lambda threads: trmask.advantage_mask(lt, lr, mask, adv, statistic="bdiff", low=0.2, high=0.2,
                                                                     threads=threads).keep_token,
    }
    if torch is not None:
        tlt, tlr, tmask, tadv = (torch.from_numpy(x) for x in (lt, lr, mask, adv))
        baselines = {"bkl_sym token mask": lambda: torch_bkl_sym_keep(torch, tlt, tlr, tmask),
                     "advantage_mask bdiff": lambda: torch_advantage_keep(torch, tlt, tlr, tmask, tadv)}
    for threads in threads_list:
        if torch is not None:
            torch.set_num_threads(threads)
        for name, run in cases.items():
            variants = {"trmask": lambda: run(threads), "probe": stream_probe(clib, (lt, lr, mask), rows, threads)}
            if torch is not None:
                variants["torch"] = baselines[name]
            med = interleaved(variants, repeat, warm)
            table.add(f"{name} {label}", "contiguous", threads, med["trmask"], rows * cols, med["probe"],
                      torch_s=med.get("torch", "not installed"))


def crossover(repeat):
    """Two threads against one on growing batches: where `threads=0` starts using every core
    (`automaticThreadsMinimumPositions` in Sources/TRMaskKernels/Parallel.swift)."""
    print(f"{'thread crossover':<34} {'positions':>10} {'1 thread':>10} {'2 threads':>10}  speed-up")
    for shift in range(10, 22):
        positions = 1 << shift
        rows = max(8, positions >> 12)
        lt, lr, mask = make_batch(rows, positions // rows, seed=5)
        med = interleaved({t: (lambda t=t: trmask.trust_region_mask(lt, lr, mask, criteria=TRM, threads=t)) for t in (1, 2)},
                          repeat * 3)
        print(f"{'':<34} {positions:>10} {med[1] * 1e6:>8.1f}us {med[2] * 1e6:>8.1f}us  {med[1] / med[2]:.2f}x")


def tiny(table, repeat):
    lt, lr, mask = make_batch(1, 16, seed=3)
    samples = interleaved({"trmask": lambda: trmask.trust_region_mask(lt, lr, mask, criteria=trmask.DEFAULT_CRITERIA),
                           "numpy": lambda: numpy_trm(lt, lr, mask)}, repeat * 50)
    print(f"{'tiny batch B=1 T=16':<34} {'python call':<14} {1:>3} {samples['trmask'] * 1e6:>8.2f}us"
          f"  numpy pipeline {samples['numpy'] * 1e6:.2f}us  ({samples['numpy'] / samples['trmask']:.2f}x)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large", action="store_true", help="also run the 64M-token cases")
    parser.add_argument("--repeat", type=int, default=9, help="timed repetitions per variant (median reported)")
    parser.add_argument("--threads", default="1,2", help="thread counts for the TRM default rows")
    parser.add_argument("--only-rules2026", action="store_true", help="run only the rows of the 2026 rules")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        torch = None
    threads_list = [int(t) for t in args.threads.split(",")]
    print(f"trmask {trmask.__version__} | numpy {np.__version__} | "
          f"torch {torch.__version__ if torch else 'not installed'} | {time.strftime('%Y-%m-%d %H:%M')}")
    print(machine.header())
    clib = build_c_baselines()
    table = Table()
    if args.only_rules2026:
        rules2026(table, clib, torch, 256, 8192, threads_list, args.repeat, "2M")
        if args.large:
            rules2026(table, clib, torch, 4096, 16384, threads_list, max(3, args.repeat // 3), "64M")
        return 0
    trm_default(table, clib, torch, 256, 8192, threads_list, args.repeat, "2M warm")
    if args.large:
        trm_default(table, clib, torch, 4096, 16384, threads_list, max(3, args.repeat // 3), "64M")
    estimators(table, clib, 256, 8192, args.repeat, "2M")
    if args.large:
        estimators(table, clib, 4096, 16384, max(3, args.repeat // 3), "64M")
    layouts(table, clib, 256, 8192, args.repeat, "2M")
    trainer_paths(table, clib, torch, 256, 8192, threads_list, args.repeat, "2M")
    if args.large:
        trainer_paths(table, clib, torch, 4096, 16384, threads_list, max(3, args.repeat // 3), "64M")
    rules2026(table, clib, torch, 256, 8192, threads_list, args.repeat, "2M")
    if args.large:
        rules2026(table, clib, torch, 4096, 16384, threads_list, max(3, args.repeat // 3), "64M")
    crossover(args.repeat)
    tiny(table, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
