"""trmask.distributed on real gloo process groups of 2 and 3 processes on localhost: every rank
gets the same bits, equal to the single-process answer computed from the same shards."""

from __future__ import annotations

import importlib.util
import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():
    pytest.skip("torch.distributed is not available", allow_module_level=True)

import distributed_workers as workers  # noqa: E402

import trmask  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(task: str, world: int, seed: int, tmp_path) -> list:
    torch.multiprocessing.spawn(workers.run, args=(world, free_port(), task, seed, str(tmp_path)), nprocs=world)
    return [torch.load(tmp_path / f"{task}-{rank}.pt", weights_only=False) for rank in range(world)]


@pytest.mark.parametrize("world", [2, 3])
def test_sum_over_ranks_adds_in_rank_order_on_every_rank(world, tmp_path):
    results = spawn("sum", world, 11, tmp_path)
    expected = list(results[0]["mine"])
    for result in results[1:]:
        expected = [a + b for a, b in zip(expected, result["mine"])]
    for result in results:
        assert list(result["total"]) == expected  # bit for bit


@pytest.mark.parametrize("world", [2, 3])
def test_sharded_rows_give_every_rank_the_single_process_decision(world, tmp_path):
    results = spawn("sharded_rows", world, 5, tmp_path)
    logp_train, logp_roll, mask, cuts = workers.sharded_batch(5, 7, 40, world)
    shards = [trmask.row_partials(logp_train[:, a:b], logp_roll[:, a:b], mask[:, a:b], estimators=("k2", "k3"))
              for a, b in zip(cuts, cuts[1:])]
    single = trmask.keep_from_partials(trmask.merge_partials(*shards) if world > 1 else shards[0])
    whole = trmask.trust_region_mask(logp_train, logp_roll, mask)
    for result in results:
        assert torch.equal(result["keep_row"], single.keep_row)
        assert torch.equal(result["count"], single.count)
        assert result["rejected"] == single.rejected
        for ours, theirs in zip(result["row_stats"], single.row_stats):
            assert np.array_equal(ours.numpy(), theirs.numpy(), equal_nan=True)  # bit for bit
        # and the decision trust_region_mask takes on the whole rows
        assert torch.equal(result["keep_row"], whole.keep_row)


needs_verl = pytest.mark.skipif(importlib.util.find_spec("verl") is None,
                                reason="verl 0.9.1 is not installed (python/verl-test/install)")


@needs_verl
@pytest.mark.parametrize("world", [2, 3])
def test_verl_batch_normalisation_across_ranks(world, tmp_path):
    results = spawn("verl_normalize", world, 3, tmp_path)
    for level in ("token", "sequence"):
        factors = {r[level]["factor"] for r in results}
        assert len(factors) == 1  # the same bits on every rank
        factor = factors.pop()
        assert factor == pytest.approx(results[0][level]["their_factor"], rel=1e-5)
        for result in results:
            torch.testing.assert_close(result[level]["ours"], result[level]["theirs"], rtol=1e-5, atol=0)
        # The single-process answer from the same blocks: the per-rank sums added in rank order.
        log_ratio, mask, cuts = workers.row_blocks(3, 9, 12, world)
        total = count = 0.0
        for a, b in zip(cuts, cuts[1:]):
            stats = trmask.rollout_correction(log_ratio=log_ratio[a:b], mask=mask[a:b], mask_weights=True,
                                              weights=trmask.WeightRule(level, "truncate", hi=2.0)).statistics["weights"]
            total, count = total + stats["norm_sum"], count + stats["norm_count"]
        assert factor == total / count
