"""DLPack inputs (SPEC-free: the protocol is the DLPack project's): JAX CPU arrays, numpy and torch
through their `__dlpack__`, versioned and legacy capsules, bfloat16 by its type code; the capsule
renamed as used and the producer's deleter called once, after the call; other devices, dtypes and
DLPack major versions refused with the argument named."""

from __future__ import annotations

import ctypes
import gc

import ml_dtypes
import numpy as np
import pytest

import trmask
from trmask import _dlpack
from trmask._arrays import FLOAT_DTYPES, Operand
from trmask.errors import TrmaskError

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None
try:
    import jax
    import jax.numpy as jnp
except ImportError:  # pragma: no cover
    jax = None

_is_valid = ctypes.pythonapi.PyCapsule_IsValid
_is_valid.argtypes, _is_valid.restype = [ctypes.py_object, ctypes.c_char_p], ctypes.c_int
_new_capsule = ctypes.pythonapi.PyCapsule_New
_new_capsule.argtypes, _new_capsule.restype = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p], ctypes.py_object


class Exporter:
    """Only the DLPack protocol of a numpy array or torch tensor; `legacy` drops the DLPack 1.0
    keywords (a producer that predates them). Keeps the capsules it handed out."""

    def __init__(self, array, legacy=False):
        self.array, self.legacy, self.capsules = array, legacy, []

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()

    def __dlpack__(self, **kwargs):
        if self.legacy and kwargs:
            raise TypeError("__dlpack__() got an unexpected keyword argument")
        self.capsules.append(self.array.__dlpack__(**kwargs))
        return self.capsules[-1]


class CtypesProducer:
    """A DLPack producer written with ctypes over a numpy array: any device, DLPack version or type
    code, and a deleter that counts its calls."""

    NAMES = {True: b"dltensor_versioned", False: b"dltensor"}

    def __init__(self, array, versioned=True, major=1, device=(1, 0), code=None):
        self.array, self.versioned, self.major, self.device = array, versioned, major, device
        self.code = code
        self.deleted = 0
        self.capsules = []
        self.deleter = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(self._delete)

    def _delete(self, address):
        self.deleted += 1

    def __dlpack_device__(self):
        return self.device

    def __dlpack__(self, max_version=None, copy=None, stream=None):
        a = self.array
        self.shape = (ctypes.c_int64 * a.ndim)(*a.shape)
        self.strides = (ctypes.c_int64 * a.ndim)(*(s // a.itemsize for s in a.strides))
        kind = {"f": 2, "i": 0, "u": 1, "b": 6, "V": 4}[a.dtype.kind]
        tensor = _dlpack._Tensor(a.ctypes.data, _dlpack._Device(*self.device), a.ndim,
                                 _dlpack._DataType(self.code if self.code is not None else kind, a.itemsize * 8, 1),
                                 self.shape, self.strides, 0)
        deleter = ctypes.cast(self.deleter, ctypes.c_void_p).value
        if self.versioned:
            self.managed = _dlpack._ManagedVersioned(_dlpack._Version(self.major, 0), None, deleter, 0, tensor)
        else:
            self.managed = _dlpack._Managed(tensor, None, deleter)
        self.capsules.append(_new_capsule(ctypes.addressof(self.managed), self.NAMES[self.versioned], None))
        return self.capsules[-1]


def _batch(dtype=np.float32, rows=5, cols=37):
    rng = np.random.default_rng(3)
    roll = rng.normal(-1.0, 1.0, size=(rows, cols))
    train = roll + rng.normal(0.0, 0.3, size=(rows, cols))
    mask = rng.random((rows, cols)) < 0.8
    return train.astype(dtype), roll.astype(dtype), mask


def _same(a, b):
    assert np.array_equal(a.keep_row, b.keep_row) and np.array_equal(a.count, b.count)
    for x, y in zip(a.row_stats, b.row_stats):
        assert np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True)


@pytest.mark.parametrize("legacy", [False, True], ids=["versioned", "legacy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, ml_dtypes.bfloat16], ids=lambda d: np.dtype(d).name)
def test_numpy_through_dlpack_equals_numpy(dtype, legacy):
    train, roll, mask = _batch(dtype)
    views = (train[::-1, ::-2], roll[:, ::-2], mask[::-1, ::-2])  # reversed and strided: DLPack carries strides
    wrapped = [Exporter(a, legacy) for a in views]
    if dtype is ml_dtypes.bfloat16:  # numpy exports no bfloat16: the ctypes producer gives its type code
        wrapped[:2] = [CtypesProducer(a, versioned=not legacy) for a in views[:2]]
    _same(trmask.trust_region_mask(*wrapped), trmask.trust_region_mask(*views))
    name = b"used_dltensor" if legacy else b"used_dltensor_versioned"
    for producer in wrapped:
        assert producer.capsules and all(_is_valid(c, name) for c in producer.capsules)


def test_the_deleter_runs_once_after_the_call():
    train, roll, _ = _batch()
    producer = CtypesProducer(train)
    operand = Operand("logp_train", producer, FLOAT_DTYPES)
    assert producer.deleted == 0 and operand.ptr == train.ctypes.data and operand.strides == (37, 1)
    del operand
    gc.collect()
    assert producer.deleted == 1
    producer = CtypesProducer(train, versioned=False)
    trmask.trust_region_mask(producer, roll)
    gc.collect()
    assert producer.deleted == 1 and _is_valid(producer.capsules[0], b"used_dltensor")


def test_refusals_name_the_argument_and_hand_the_tensor_back():
    train, roll, _ = _batch()
    gpu = CtypesProducer(train, device=(2, 1))
    with pytest.raises(TrmaskError, match=r"`logp_train` is on the CUDA device 1; trmask reads CPU memory: .*\.cpu\(\)"):
        trmask.trust_region_mask(gpu, roll)
    assert gpu.capsules == []  # the device is asked first: no capsule for another device
    future = CtypesProducer(train, major=2)
    with pytest.raises(TrmaskError, match=r"`logp_train` came as a DLPack 2.0 tensor; trmask reads DLPack 1.x"):
        trmask.trust_region_mask(future, roll)
    ints = CtypesProducer(train.view(np.int32))
    with pytest.raises(TrmaskError, match=r"`logp_roll` has dtype int32; expected float32, float64, float16 or bfloat16"):
        trmask.trust_region_mask(train, ints)
    complex_code = CtypesProducer(train, code=5)
    with pytest.raises(TrmaskError, match=r"`logp_train` has dtype complex32"):
        trmask.trust_region_mask(complex_code, roll)
    gc.collect()
    assert (future.deleted, ints.deleted, complex_code.deleted) == (1, 1, 1)


@pytest.mark.skipif(torch is None, reason="torch is not installed")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_torch_through_dlpack_equals_torch(dtype):
    train, roll, mask = (torch.from_numpy(a) for a in _batch(np.float32))
    train, roll = train.to(getattr(torch, dtype)), roll.to(getattr(torch, dtype))
    train_t = train.T.contiguous().T  # column-major: DLPack carries the strides
    got = trmask.trust_region_mask(Exporter(train_t), Exporter(roll), Exporter(mask))
    _same(got, trmask.trust_region_mask(train, roll, mask))
    assert isinstance(got.keep_row, np.ndarray)  # a DLPack input gives numpy outputs


@pytest.mark.skipif(jax is None, reason="jax is not installed")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_jax_cpu_arrays_as_inputs(dtype):
    train, roll, mask = _batch(np.float32)
    jt, jr, jm = jnp.asarray(train).astype(dtype), jnp.asarray(roll).astype(dtype), jnp.asarray(mask)
    expected = trmask.trust_region_mask(np.asarray(jt), np.asarray(jr), mask)
    _same(trmask.trust_region_mask(jt, jr, jm), expected)
    values = trmask.token_values(jt, jr, "k3")
    assert np.array_equal(values, trmask.token_values(np.asarray(jt), np.asarray(jr), "k3"))
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(4, 300)), dtype=dtype)
    assert np.array_equal(trmask.exact_kl(logits, logits * 0.9).kl, trmask.exact_kl(np.asarray(logits), np.asarray(logits * 0.9)).kl)


@pytest.mark.skipif(jax is None, reason="jax is not installed")
def test_jax_arrays_are_inputs_only():
    train, roll, _ = _batch(np.float32)
    with pytest.raises(TrmaskError, match=r"`out` is a DLPack array; outputs are numpy arrays or torch tensors"):
        trmask.token_values(train, roll, "k3", out=jnp.zeros(train.shape, dtype=jnp.float32))
