"""The library's worker pool under the ways trainers call it: several Python threads at once
(ctypes releases the GIL), a fork() between calls (DataLoader workers), every thread count."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import trmask

from test_api import _digest, batch

CRITERIA = "max:k2<=0.1,mean:k3<=0.002,-0.01<=mean:delta<=0.01,sum:tv<=3,0.5<=token:ratio<=2"


def _inputs(seed: int):
    # 40 x 2000 = 80,000 positions: above the one-thread minimum (2^14), so threads > 1 run in parallel.
    lt, lr, mask = batch(rows=40, cols=2000, seed=seed)
    lt[np.random.default_rng(seed).random(lt.shape) < 0.001] = np.nan
    return lt, lr, mask


def test_concurrent_callers_get_their_own_results():
    cases = [_inputs(seed) for seed in range(6)]
    expected = [_digest(trmask.trust_region_mask(*c, criteria=CRITERIA, threads=1)) for c in cases]

    def call(i):
        return [_digest(trmask.trust_region_mask(*cases[i % 6], criteria=CRITERIA, threads=2 + i % 3)) for _ in range(20)]

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(call, range(12)))
    for i, digests in enumerate(results):
        assert set(digests) == {expected[i % 6]}, f"caller {i}"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
def test_fork_between_calls():
    lt, lr, mask = _inputs(7)
    before = _digest(trmask.trust_region_mask(lt, lr, mask, criteria=CRITERIA, threads=2))
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its helpers do not exist; the call must start new ones, not wait
        try:
            ok = _digest(trmask.trust_region_mask(lt, lr, mask, criteria=CRITERIA, threads=2)) == before
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(child, 0)
    answer = os.read(read, 1)
    os.close(read)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    assert answer == b"1", "the forked child's result differs"
    assert _digest(trmask.trust_region_mask(lt, lr, mask, criteria=CRITERIA, threads=2)) == before


def test_thread_counts_beyond_the_processors_give_the_same_bits():
    lt, lr, mask = _inputs(8)
    digests = {t: _digest(trmask.trust_region_mask(lt, lr, mask, criteria=CRITERIA, threads=t))
               for t in (0, 1, 2, 3, 8, 1000)}
    assert len(set(digests.values())) == 1, digests
