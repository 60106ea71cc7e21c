"""numpy arrays, torch CPU tensors and DLPack arrays (_dlpack.py) as strided views for the C ABI,
without copies.

Every check names the argument and says what was expected. Arrays stay referenced by the
``Operand`` objects (and those by the caller's frame) until the C call returns: a raw pointer
alone would not keep them alive.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any, Optional, Sequence

import numpy as np

from . import _dlpack, _ffi
from .errors import TrmaskError

FLOAT_DTYPES = (_ffi.DTYPE_F32, _ffi.DTYPE_F64, _ffi.DTYPE_F16, _ffi.DTYPE_BF16)
# Any numeric mask: nonzero = valid (bool and uint8 are read with vector loads, others per element).
MASK_DTYPES = (_ffi.DTYPE_BOOL, _ffi.DTYPE_U8, _ffi.DTYPE_I8, _ffi.DTYPE_I16, _ffi.DTYPE_U16, _ffi.DTYPE_I32,
               _ffi.DTYPE_U32, _ffi.DTYPE_I64, _ffi.DTYPE_U64) + FLOAT_DTYPES
INDEX_DTYPES = (_ffi.DTYPE_I32, _ffi.DTYPE_I64)
ANY_DTYPES = MASK_DTYPES

_DTYPE_NAMES = {
    _ffi.DTYPE_F32: "float32", _ffi.DTYPE_F64: "float64", _ffi.DTYPE_F16: "float16",
    _ffi.DTYPE_BF16: "bfloat16", _ffi.DTYPE_U8: "uint8", _ffi.DTYPE_BOOL: "bool",
    _ffi.DTYPE_I32: "int32", _ffi.DTYPE_I64: "int64", _ffi.DTYPE_I8: "int8", _ffi.DTYPE_I16: "int16",
    _ffi.DTYPE_U16: "uint16", _ffi.DTYPE_U32: "uint32", _ffi.DTYPE_U64: "uint64",
}
_NUMPY_DTYPES = {
    np.dtype(np.float32): _ffi.DTYPE_F32, np.dtype(np.float64): _ffi.DTYPE_F64,
    np.dtype(np.float16): _ffi.DTYPE_F16, np.dtype(np.uint8): _ffi.DTYPE_U8,
    np.dtype(np.bool_): _ffi.DTYPE_BOOL, np.dtype(np.int32): _ffi.DTYPE_I32,
    np.dtype(np.int64): _ffi.DTYPE_I64, np.dtype(np.int8): _ffi.DTYPE_I8, np.dtype(np.int16): _ffi.DTYPE_I16,
    np.dtype(np.uint16): _ffi.DTYPE_U16, np.dtype(np.uint32): _ffi.DTYPE_U32, np.dtype(np.uint64): _ffi.DTYPE_U64,
}


def _torch():
    """The torch module if the caller has imported it (trmask never imports torch itself)."""
    return sys.modules.get("torch")


def is_torch(x: Any) -> bool:
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor)


#: torch dtype -> dtype code, built on the first torch operand (trmask never imports torch itself).
_TORCH_DTYPES: dict = {}


def _torch_dtype_code(dtype) -> Optional[int]:
    if not _TORCH_DTYPES:
        _TORCH_DTYPES.update(_torch_dtype_table(_torch()))
    return _TORCH_DTYPES.get(dtype)


def _torch_dtype_table(torch) -> dict:
    codes = {
        torch.float32: _ffi.DTYPE_F32, torch.float64: _ffi.DTYPE_F64, torch.float16: _ffi.DTYPE_F16,
        torch.bfloat16: _ffi.DTYPE_BF16, torch.uint8: _ffi.DTYPE_U8, torch.bool: _ffi.DTYPE_BOOL,
        torch.int32: _ffi.DTYPE_I32, torch.int64: _ffi.DTYPE_I64, torch.int8: _ffi.DTYPE_I8,
        torch.int16: _ffi.DTYPE_I16,
    }
    # torch 2.3 added the wide unsigned types.
    for name, code in (("uint16", _ffi.DTYPE_U16), ("uint32", _ffi.DTYPE_U32), ("uint64", _ffi.DTYPE_U64)):
        if hasattr(torch, name):
            codes[getattr(torch, name)] = code
    return codes


def _numpy_dtype_code(dtype: np.dtype) -> Optional[int]:
    code = _NUMPY_DTYPES.get(dtype)
    if code is None and dtype.name == "bfloat16":  # ml_dtypes.bfloat16
        return _ffi.DTYPE_BF16
    return code


_from_buffer = ctypes.c_char.from_buffer
_addressof = ctypes.addressof


def data_pointer(array: np.ndarray) -> int:
    """The address of a numpy array's first element. Through the buffer protocol when the array
    is C-contiguous, writable and not empty (a third of the cost of ``array.ctypes.data``, which
    builds a helper object on every access); ``array.ctypes.data`` otherwise."""
    try:
        return _addressof(_from_buffer(array))
    except (TypeError, ValueError, BufferError):
        return array.ctypes.data


def _expected(codes: Sequence[int]) -> str:
    names = [_DTYPE_NAMES[c] for c in codes]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _refuse_raw_dtype(name: str, dtype: np.dtype) -> None:
    """Names the two numpy dtypes that look like accepted ones but are not readable in place."""
    if not dtype.isnative:
        raise TrmaskError(f"`{name}` is big-endian ({dtype.str}); use .astype('{dtype.newbyteorder('<').str}')")
    if dtype.kind == "V" and dtype.itemsize == 2 and dtype.names is None:
        raise TrmaskError(f"`{name}` has dtype {dtype.str} (raw 2-byte records, as numpy.load returns a bfloat16 "
                          f"array saved by numpy.savez): view it as bfloat16 with {name}.view(ml_dtypes.bfloat16)")


class Operand:
    """One array argument: the object, its data pointer, dtype code, shape and element strides."""

    __slots__ = ("name", "obj", "ptr", "dtype", "shape", "strides")

    def __init__(self, name: str, obj: Any, dtypes: Sequence[int]):
        self.name = name
        if type(obj) is not np.ndarray and is_torch(obj):
            if obj.device.type != "cpu":
                raise TrmaskError(f"`{name}` is on device {obj.device}; trmask runs on CPU tensors (use .cpu())")
            if obj.layout is not _torch().strided:
                raise TrmaskError(f"`{name}` is a {str(obj.layout).replace('torch.', '')} tensor; trmask reads dense "
                                  f"(strided) tensors: pass {name}.to_dense()")
            code = _torch_dtype_code(obj.dtype)
            dtype_name = str(obj.dtype).replace("torch.", "")
            if code is not None and (obj.is_neg() or obj.is_conj()):
                # A lazy negation (`x._neg_view()`, `x.conj().imag`): memory holds -x.
                raise TrmaskError(f"`{name}` is a lazily negated view (is_neg() is True, e.g. from x.conj().imag): "
                                  f"its memory holds the values with the opposite sign; pass {name}.resolve_neg()")
            self.ptr = obj.data_ptr()
            self.shape = tuple(obj.shape)
            self.strides = tuple(obj.stride())
        elif not isinstance(obj, np.ndarray) and _dlpack.exports(obj):
            obj = _dlpack.DLPackArray(name, obj)  # owned until this operand is freed, after the call
            code, dtype_name, self.ptr, self.shape, self.strides = obj.dtype_code, obj.dtype_name, obj.ptr, obj.shape, obj.strides
        else:
            if not isinstance(obj, np.ndarray):
                try:
                    obj = np.asarray(obj)  # a list has no memory to read in place: this copies (docs/python.md)
                except (TypeError, ValueError) as error:  # ragged lists, objects numpy cannot convert
                    raise TrmaskError(f"`{name}` is a {type(obj).__name__} that is not an array ({error}); pass a numpy "
                                      "array or a torch tensor") from None
            elif isinstance(obj, np.ma.MaskedArray):  # reading its data in place would ignore its mask
                raise TrmaskError(f"`{name}` is a numpy masked array, whose mask trmask would not see; pass "
                                  f"{name}.data and its validity as `mask=` (np.ma.getmaskarray({name}) marks the "
                                  "invalid entries)")
            dtype = obj.dtype
            code = _numpy_dtype_code(dtype)
            dtype_name = None if code in dtypes else dtype.name
            if code is None:
                _refuse_raw_dtype(name, dtype)
            itemsize = dtype.itemsize
            strides = obj.strides
            if any(s % itemsize for s in strides):
                raise TrmaskError(
                    f"`{name}` has byte strides {strides} that are not multiples of its item size "
                    f"{itemsize}; pass np.ascontiguousarray({name})")
            self.ptr = data_pointer(obj)
            self.shape = obj.shape
            self.strides = tuple(s // itemsize for s in strides)
        if code not in dtypes:
            raise TrmaskError(f"`{name}` has dtype {dtype_name}; expected {_expected(dtypes)}")
        self.obj = obj
        self.dtype = code

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def broadcast_to(self, shape: tuple, like: str) -> "Operand":
        """This operand viewed with `shape` (numpy broadcasting rules, zero strides, no copy)."""
        if self.shape == shape:
            return self
        if len(self.shape) > len(shape) or any(
                s != 1 and s != t for s, t in zip(self.shape[::-1], shape[::-1])):
            raise TrmaskError(f"`{self.name}` has shape {self.shape}; expected {shape} like `{like}`, "
                              f"or a shape that broadcasts to it")
        pad = len(shape) - len(self.shape)
        strides = (0,) * pad + tuple(0 if s == 1 else st for s, st in zip(self.shape, self.strides))
        view = object.__new__(Operand)
        view.name, view.obj, view.ptr, view.dtype = self.name, self.obj, self.ptr, self.dtype
        view.shape, view.strides = shape, strides
        return view

    def fields(self) -> tuple:
        """The C view's fields (data, dtype, reserved, stride_row, stride_col): 2-D operands as
        [rows, cols], 1-D as packed/row vectors (stride_col)."""
        strides = self.strides
        if len(strides) == 2:
            return (self.ptr, self.dtype, 0, strides[0], strides[1])
        return (self.ptr, self.dtype, 0, 0, strides[0] if strides else 0)


def optional(name: str, obj: Any, dtypes: Sequence[int]) -> Optional[Operand]:
    return None if obj is None else Operand(name, obj, dtypes)


ABSENT = _ffi.View(*_ffi.ABSENT_VIEW)


def new_output(like: Any, shape: tuple, dtype: str):
    """A new array of the caller's kind (torch if `like` is a tensor, else numpy)."""
    if is_torch(like):
        torch = _torch()
        return torch.empty(shape, dtype={"float32": torch.float32, "float64": torch.float64, "bool": torch.bool,
                                         "int64": torch.int64}[dtype])
    return np.empty(shape, dtype=dtype)


def output_struct(array: Any, two_d: bool = False, grid_packed: bool = False) -> _ffi.Out:
    """The C output for an array this module allocated, or one the caller passed and
    `check_output` accepted (ndarray subclasses such as np.memmap included)."""
    if isinstance(array, np.ndarray):
        ptr, strides = data_pointer(array), tuple(s // array.itemsize for s in array.strides)
    else:
        ptr, strides = array.data_ptr(), tuple(array.stride())
    if two_d:
        return _ffi.Out(ptr or None, strides[0], strides[1])
    if grid_packed:
        return _ffi.Out(ptr or None, 0, strides[0] if strides else 0)
    return _ffi.Out(ptr or None, strides[0] if strides else 0, 0)


def check_output(name: str, out: Any, shape: tuple, dtype_code: int, inputs: Sequence[Operand]) -> None:
    """Refuses an output the caller passed that trmask cannot write safely: wrong shape or
    dtype, read-only, zero strides on a dimension longer than 1, or memory shared with an input."""
    if isinstance(out, np.ma.MaskedArray):
        raise TrmaskError(f"`{name}` is a masked array; pass `{name}.data` (trmask writes every element and "
                          "would leave the mask stale)")
    operand = Operand(name, out, (dtype_code,))
    if isinstance(operand.obj, _dlpack.DLPackArray):
        raise TrmaskError(f"`{name}` is a DLPack array; outputs are numpy arrays or torch tensors")
    if operand.shape != shape:
        raise TrmaskError(f"`{name}` has shape {operand.shape}; expected {shape}")
    if isinstance(out, np.ndarray) and not out.flags.writeable:
        raise TrmaskError(f"`{name}` is read-only")
    if is_torch(out) and out.requires_grad:
        raise TrmaskError(f"`{name}` requires grad; pass a tensor without autograd history")
    if any(stride == 0 and size > 1 for stride, size in zip(operand.strides, operand.shape)):
        raise TrmaskError(f"`{name}` has a zero stride on a dimension longer than 1 (a broadcast view)")
    lo, hi = _byte_span(operand)
    for other in inputs:
        olo, ohi = _byte_span(other)
        if lo < ohi and olo < hi:
            raise TrmaskError(f"`{name}` shares memory with the input `{other.name}`")


def _byte_span(operand: Operand) -> tuple:
    if operand.ptr == 0 or 0 in operand.shape:
        return (0, 0)
    itemsize = {_ffi.DTYPE_F64: 8, _ffi.DTYPE_I64: 8, _ffi.DTYPE_U64: 8, _ffi.DTYPE_F32: 4, _ffi.DTYPE_I32: 4,
                _ffi.DTYPE_U32: 4, _ffi.DTYPE_F16: 2, _ffi.DTYPE_BF16: 2, _ffi.DTYPE_I16: 2,
                _ffi.DTYPE_U16: 2}.get(operand.dtype, 1)
    low = sum((n - 1) * s for n, s in zip(operand.shape, operand.strides) if s < 0)
    high = sum((n - 1) * s for n, s in zip(operand.shape, operand.strides) if s > 0)
    return operand.ptr + low * itemsize, operand.ptr + (high + 1) * itemsize


def pointer(array: Any) -> int:
    """The data address of an array this module allocated or `check_output` accepted (0 when it
    has no elements)."""
    if isinstance(array, np.ndarray):
        return data_pointer(array) if array.size else 0
    return array.data_ptr() if array.numel() else 0
