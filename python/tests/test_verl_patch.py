"""trmask.verl.patch() on verl 0.9.1's modules, jagged (nested) batches, and the return types
without verl. Skips without verl for the patch tests (python/verl-test/install)."""

from __future__ import annotations

import importlib.util
import math
import sys
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import trmask  # noqa: E402
import trmask.verl  # noqa: E402
from trmask.integrations.verl import _functions  # noqa: E402

needs_verl = pytest.mark.skipif(importlib.util.find_spec("verl") is None,
                                reason="verl 0.9.1 is not installed (python/verl-test/install)")
NAMES = ("compute_rollout_rejection_mask", "compute_rollout_correction_weights",
         "compute_rollout_correction_and_rejection_mask", "compute_offpolicy_metrics")


def batch(rows=4, cols=6, seed=0):
    rng = np.random.default_rng(seed)
    logp_roll = torch.from_numpy(-np.abs(rng.normal(0, 1, (rows, cols))).astype(np.float32))
    logp_train = logp_roll + torch.from_numpy(rng.normal(0, 0.2, (rows, cols)).astype(np.float32))
    lengths = torch.tensor([cols, 0, 2, cols - 1][:rows])
    mask = (torch.arange(cols)[None, :] < lengths[:, None]).to(torch.float32)
    return logp_train, logp_roll, mask, lengths


@needs_verl
def test_patch_replaces_every_binding_and_undo_restores_them():
    helper = pytest.importorskip("verl.trainer.ppo.rollout_corr_helper")
    originals = {name: getattr(helper, name) for name in NAMES}
    # A trainer module that imported a function by name before the patch.
    trainer = types.ModuleType("verl.fake_trainer")
    trainer.compute_rollout_correction_and_rejection_mask = originals["compute_rollout_correction_and_rejection_mask"]
    sys.modules["verl.fake_trainer"] = trainer
    try:
        handle = trmask.verl.patch()
        for name in NAMES:
            assert getattr(helper, name) is not originals[name]
            assert getattr(helper, name).__trmask_original__ is originals[name]
        assert trainer.compute_rollout_correction_and_rejection_mask is helper.compute_rollout_correction_and_rejection_mask
        assert ("verl.fake_trainer", "compute_rollout_correction_and_rejection_mask") in handle.replaced
        # Patching again replaces nothing more; undoing the first handle restores verl.
        assert trmask.verl.patch().replaced == []
        handle.undo()
        for name in NAMES:
            assert getattr(helper, name) is originals[name]
        assert trainer.compute_rollout_correction_and_rejection_mask is originals["compute_rollout_correction_and_rejection_mask"]
    finally:
        del sys.modules["verl.fake_trainer"]


@needs_verl
def test_patched_verl_pipeline_calls_trmask(monkeypatch):
    """verl's compute_rollout_correction_and_add_to_batch (what ray_trainer.fit calls) goes through
    trmask once patched, and gives verl's answer."""
    helper = pytest.importorskip("verl.trainer.ppo.rollout_corr_helper")
    from verl.protocol import DataProto

    logp_train, logp_roll, mask, _ = batch()
    config = {"rollout_is": "token", "rollout_is_threshold": 2.0, "rollout_rs": "seq_max_k2,seq_mean_k3",
              "rollout_rs_threshold": "0.1,0.002"}

    def run():
        data = DataProto.from_dict(tensors={"old_log_probs": logp_train, "rollout_log_probs": logp_roll,
                                            "response_mask": mask.clone()})
        return helper.compute_rollout_correction_and_add_to_batch(data, config)

    theirs, their_metrics = run()
    calls = []
    real = _functions.compute_rollout_correction_and_rejection_mask
    monkeypatch.setattr(_functions, "compute_rollout_correction_and_rejection_mask",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    with trmask.verl.patch():
        ours, our_metrics = run()
    assert calls == [1]
    assert torch.equal(ours.batch["response_mask"], theirs.batch["response_mask"])
    torch.testing.assert_close(ours.batch["rollout_is_weights"], theirs.batch["rollout_is_weights"], rtol=1e-5, atol=0)
    assert list(our_metrics) == list(their_metrics)


@needs_verl
def test_tensors_on_another_device_go_to_verl():
    helper = pytest.importorskip("verl.trainer.ppo.rollout_corr_helper")
    seen = []
    original = helper.compute_offpolicy_metrics
    with trmask.verl.patch():
        patched = helper.compute_offpolicy_metrics
        meta = torch.zeros(2, 3, device="meta")
        patched_original = patched.__trmask_original__
        assert patched_original is original
        # A meta tensor stands in for CUDA: the dispatcher must not hand it to trmask.
        try:
            patched(meta, meta, meta)
        except Exception as error:  # verl's own function fails on meta tensors in its own way
            seen.append(type(error))
    assert not any(issubclass(kind, trmask.TrmaskError) for kind in seen)


def test_jagged_batches_go_in_packed_and_come_back_nested():
    logp_train, logp_roll, mask, lengths = batch()
    rows = [slice(0, int(n)) for n in lengths]
    nested = {name: torch.nested.nested_tensor([x[i, r] for i, r in enumerate(rows)], layout=torch.jagged)
              for name, x in (("train", logp_train), ("roll", logp_roll), ("mask", mask))}
    offsets = nested["train"].offsets()
    nested["roll"] = torch.nested.nested_tensor_from_jagged(nested["roll"].values(), offsets)
    nested["mask"] = torch.nested.nested_tensor_from_jagged(nested["mask"].values(), offsets)
    kwargs = dict(rollout_is="sequence", rollout_is_threshold=2.0, rollout_rs="token_k1,seq_mean_k3",
                  rollout_rs_threshold="0.8_1.25,0.01")
    dense = trmask.verl.compute_rollout_correction_and_rejection_mask(logp_train, logp_roll, mask, **kwargs)
    jagged = trmask.verl.compute_rollout_correction_and_rejection_mask(nested["train"], nested["roll"], nested["mask"],
                                                                       **kwargs)
    weights, out_mask = jagged[0].batch["rollout_is_weights"], jagged[1]
    for out in (weights, out_mask):
        assert out.is_nested and out.layout == torch.jagged and out.offsets() is offsets
    assert out_mask.values().dtype == mask.dtype
    for i, r in enumerate(rows):
        assert torch.equal(out_mask[i], dense[1][i, r])
        assert torch.equal(weights[i], dense[0].batch["rollout_is_weights"][i, r])
    assert jagged[2].keys() == dense[2].keys()
    for key, value in dense[2].items():
        assert jagged[2][key] == value or (math.isnan(value) and math.isnan(jagged[2][key]))


def test_jagged_and_dense_arguments_cannot_mix():
    logp_train, logp_roll, mask, _ = batch()
    nested = torch.nested.nested_tensor([logp_train[0], logp_train[1]], layout=torch.jagged)
    with pytest.raises(trmask.TrmaskError, match="nested"):
        trmask.verl.compute_rollout_rejection_mask(nested, mask[:2], "token_k2", "0.1")


def test_weights_come_in_a_batch_object_without_verl(monkeypatch):
    monkeypatch.setitem(sys.modules, "verl.protocol", None)  # import fails as if verl were absent
    logp_train, logp_roll, mask, _ = batch()
    weights, _, _ = trmask.verl.compute_rollout_correction_and_rejection_mask(logp_train, logp_roll, mask,
                                                                              rollout_is="token")
    assert isinstance(weights, trmask.verl.WeightsBatch)
    assert weights.batch["rollout_is_weights"].shape == logp_train.shape


def test_verl_exception_types_are_trmask_errors():
    for kind in (trmask.verl.VerlTypeError, trmask.verl.VerlZeroDivisionError, trmask.verl.VerlAssertionError):
        assert issubclass(kind, trmask.TrmaskError)
    with pytest.raises(ZeroDivisionError):
        trmask.verl.compute_rollout_rejection_mask(torch.zeros(1, 2), torch.ones(1, 2), "token_k1", "0")
    with pytest.raises(AssertionError):
        trmask.verl.compute_offpolicy_metrics(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2))
