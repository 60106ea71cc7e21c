"""verl 0.9.1's rollout_corr_helper as the reference of trmask.verl's differential tests, and the
comparison rules (tolerances with their reasons). Imported by test_verl*.py, which skip without
verl (install it with python/verl-test/install)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import currently_in_test_context, event

torch = pytest.importorskip("torch")
helper = pytest.importorskip("verl.trainer.ppo.rollout_corr_helper", reason="verl 0.9.1 is not installed "
                             "(python/verl-test/install)")

#: Metric values: verl reduces in float32 (torch's CPU sums), trmask in float64. 1e-5 relative is
#: the contract; the absolute part covers float32 reductions whose result cancels (a mean of
#: log-ratios near 0): verl's own error there is about n * 2^-24 * mean |term|.
RTOL = 1e-5


def outcome(function, *args, **kwargs):
    """("ok", value) or ("error", exception)."""
    try:
        return "ok", function(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - the type is what is compared
        return "error", error


def same_refusal(theirs, ours) -> bool:
    """True when both returned; asserts that both refused alike otherwise (ours may be a
    subclass of verl's exception type: trmask's are also TrmaskError)."""
    if currently_in_test_context():
        event(f"verl refused: {type(theirs[1]).__name__} {str(theirs[1])[:40]}" if theirs[0] == "error" else "verl returned: compared")
    if theirs[0] == "error":
        assert ours[0] == "error", f"verl raised {theirs[1]!r}; trmask returned"
        assert isinstance(ours[1], type(theirs[1])), f"verl raised {theirs[1]!r}; trmask raised {ours[1]!r}"
        return False
    assert ours[0] == "ok", f"verl returned; trmask raised {ours[1]!r}"
    return True


FLOAT32_MAX = float(np.finfo(np.float32).max)


def close(ours: float, theirs: float, atol: float, rows: int = 1) -> bool:
    if math.isnan(theirs) or math.isnan(ours):
        return math.isnan(theirs) and math.isnan(ours)
    if theirs == math.inf and math.isfinite(ours) and ours * rows >= FLOAT32_MAX * (1 - RTOL):
        # verl averages per-row values (the perplexities) in float32: the sum of `rows` values
        # overflowed there, while trmask's float64 mean is finite (docs/verl.md, what differs).
        return True
    if math.isinf(theirs) or math.isinf(ours):
        return ours == theirs
    return abs(ours - theirs) <= RTOL * abs(theirs) + atol


def assert_metrics(ours: dict, theirs: dict, atol: dict, rows: int = 1) -> None:
    """Same keys in the same order; values within RTOL plus the key's absolute allowance (`close`;
    ``rows``: the batch's row count, for verl's float32 overflow of a mean over rows)."""
    assert list(ours) == list(theirs)
    bad = [(key, ours[key], theirs[key]) for key in theirs
           if not close(ours[key], theirs[key], atol.get(key, 0.0), rows)]
    assert not bad, "metrics differ (key, trmask, verl): " + "; ".join(map(str, bad[:8]))


def as_numpy(x):
    return x.detach().to(torch.float64).numpy() if x.dtype != torch.bool else x.numpy()


def assert_same_grid(ours, theirs, what: str, exact: bool) -> None:
    assert ours.dtype == theirs.dtype, f"{what}: dtype {ours.dtype}, verl {theirs.dtype}"
    assert tuple(ours.shape) == tuple(theirs.shape), f"{what}: shape {tuple(ours.shape)}, verl {tuple(theirs.shape)}"
    a, b = as_numpy(ours), as_numpy(theirs)
    if exact:
        same = (a == b) | (np.isnan(a) & np.isnan(b))
    else:
        same = np.isclose(a, b, rtol=RTOL, atol=0.0, equal_nan=True)
    if not same.all():
        where = np.argwhere(~same)[:5]
        raise AssertionError(f"{what} differs at {where.tolist()}: trmask {[a[tuple(i)] for i in where]}, "
                             f"verl {[b[tuple(i)] for i in where]}")
