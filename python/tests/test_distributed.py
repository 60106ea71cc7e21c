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


HAVE_VERL = importlib.util.find_spec("verl") is not None
TASKS = ["sum", "sharded_rows", "dp_metrics"] + (["verl_normalize"] if HAVE_VERL else [])
SEED = 5


@pytest.fixture(scope="module", params=[2, 3], ids=["2-processes", "3-processes"])
def group(request, tmp_path_factory):
    """Every task's result on every rank of one real gloo group of `world` processes."""
    world, out = request.param, tmp_path_factory.mktemp(f"world{request.param}")
    torch.multiprocessing.spawn(workers.run, args=(world, free_port(), TASKS, SEED, str(out)), nprocs=world)
    return world, {task: [torch.load(out / f"{task}-{rank}.pt", weights_only=False) for rank in range(world)]
                   for task in TASKS}


def test_sum_over_ranks_adds_in_rank_order_on_every_rank(group):
    world, results = group[0], group[1]["sum"]
    assert len(results) == world
    expected = list(results[0]["mine"])
    for result in results[1:]:
        expected = [a + b for a, b in zip(expected, result["mine"])]
    for result in results:
        assert list(result["total"]) == expected  # bit for bit


def test_sharded_rows_give_every_rank_the_single_process_decision(group):
    world, results = group[0], group[1]["sharded_rows"]
    logp_train, logp_roll, mask, cuts = workers.sharded_batch(SEED, 7, 40, world)
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


def same_bits(a, b) -> bool:
    return np.float64(a).tobytes() == np.float64(b).tobytes()


def test_data_parallel_metrics_equal_the_single_process_metrics_bit_for_bit(group):
    world, results = group[0], group[1]["dp_metrics"]
    logp_train, logp_roll, mask, cuts = workers.dp_batch(SEED, 11, 9, world)
    assert not torch.distributed.is_initialized()  # the single-process answer, verl's own path
    for index, (name, kwargs) in enumerate(workers.DP_CALLS):
        grids, metrics = workers.dp_call(name, kwargs, logp_train, logp_roll, mask)
        assert len(metrics) > 5
        for rank, result in enumerate(results):
            block = slice(cuts[rank], cuts[rank + 1])
            if result["calls"][index][0] == "refused":
                assert cuts[rank] == cuts[rank + 1] and "valid token" in result["calls"][index][1]
                continue
            our_grids, our_metrics = result["calls"][index]
            if cuts[rank] == cuts[rank + 1]:  # verl returns no metrics for an empty batch
                assert our_metrics == {}
                continue
            assert our_metrics.keys() == metrics.keys(), name
            different = {key: (our_metrics[key], value) for key, value in metrics.items()
                         if not same_bits(our_metrics[key], value)}
            assert not different, (name, rank, different)
            for ours, theirs in zip(our_grids, grids):  # this rank's rows of the whole batch's grids
                assert torch.equal(ours.view(torch.int32 if ours.dtype == torch.float32 else ours.dtype),
                                   theirs[block].view(torch.int32 if theirs.dtype == torch.float32 else theirs.dtype))
    whole = trmask.rollout_correction(logp_train, logp_roll, mask, rejections=[trmask.Rejection("seq_mean", "k3", hi=0.01)],
                                      weights=trmask.WeightRule("token", "truncate", hi=2.0), mask_weights=True)
    for result in results:
        assert repr(result["statistics"]) == repr(whole.statistics)  # repr: every float's shortest exact digits


@pytest.mark.skipif(not HAVE_VERL, reason="verl 0.9.1 is not installed (python/verl-test/install)")
def test_verl_batch_normalisation_across_ranks(group):
    world, results = group[0], group[1]["verl_normalize"]
    for level in ("token", "sequence"):
        factors = {r[level]["factor"] for r in results}
        assert len(factors) == 1  # the same bits on every rank
        factor = factors.pop()
        assert factor == pytest.approx(results[0][level]["their_factor"], rel=1e-5)
        for result in results:
            torch.testing.assert_close(result[level]["ours"], result[level]["theirs"], rtol=1e-5, atol=0)
        # The single-process answer from the same blocks: the per-rank sums added in rank order.
        log_ratio, mask, cuts = workers.row_blocks(SEED, 9, 12, world)
        total = count = 0.0
        for a, b in zip(cuts, cuts[1:]):
            stats = trmask.rollout_correction(log_ratio=log_ratio[a:b], mask=mask[a:b], mask_weights=True,
                                              weights=trmask.WeightRule(level, "truncate", hi=2.0)).statistics["weights"]
            total, count = total + stats["norm_sum"], count + stats["norm_count"]
        assert factor == total / count


def test_without_a_process_group_trmask_distributed_says_so():
    import trmask.distributed

    assert not torch.distributed.is_initialized()
    with pytest.raises(trmask.TrmaskError, match="init_process_group"):
        trmask.distributed.sum_over_ranks([1.0])
    with pytest.raises(trmask.TrmaskError, match="expected RowPartials"):
        trmask.distributed.row_partials_over_ranks(None)
