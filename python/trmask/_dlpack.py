"""Any CPU array with the DLPack protocol (``__dlpack__``, ``__dlpack_device__``: JAX, CuPy on the
host, numpy, torch, ...) read in place, without copies.

The protocol (the DLPack project's python_spec and dlpack.h): the consumer asks for a versioned
capsule (``max_version=(1, 0)``, DLPack >= 1.0, named ``"dltensor_versioned"``) and accepts a
legacy one (``"dltensor"``) from producers that predate it; it takes ownership by renaming the
capsule (``"used_dltensor_versioned"`` / ``"used_dltensor"``: the producer's capsule destructor
then does nothing) and calls the tensor's deleter when it is done, here when the `DLPackArray`
is freed, after the C call that reads it has returned.
"""

from __future__ import annotations

import ctypes
import math
from ctypes import POINTER, PYFUNCTYPE, Structure, c_char_p, c_int32, c_int64, c_uint8, c_uint16, c_uint32, c_uint64, c_void_p
from typing import Any

from . import _ffi
from .errors import TrmaskError

_CPU = 1  # kDLCPU
_DEVICE_NAMES = {2: "CUDA", 3: "CUDA host (pinned)", 4: "OpenCL", 7: "Vulkan", 8: "Metal", 9: "VPI", 10: "ROCm",
                 11: "ROCm host (pinned)", 12: "extension", 13: "CUDA managed", 14: "oneAPI", 15: "WebGPU",
                 16: "Hexagon", 17: "MAIA", 18: "Trainium"}
# (DLDataTypeCode, bits) -> trmask dtype; lanes must be 1.
_DTYPES = {(2, 32): _ffi.DTYPE_F32, (2, 64): _ffi.DTYPE_F64, (2, 16): _ffi.DTYPE_F16, (4, 16): _ffi.DTYPE_BF16,
           (1, 8): _ffi.DTYPE_U8, (6, 8): _ffi.DTYPE_BOOL, (0, 32): _ffi.DTYPE_I32, (0, 64): _ffi.DTYPE_I64}
_KIND_NAMES = {0: "int", 1: "uint", 2: "float", 4: "bfloat", 5: "complex", 6: "bool"}
_READ_ONLY = 1  # DLPACK_FLAG_BITMASK_READ_ONLY

# Capsule names live as long as this module, which outlives every capsule it renames (a capsule
# is released when the call that asked for it returns).
_VERSIONED, _USED_VERSIONED = b"dltensor_versioned", b"used_dltensor_versioned"
_LEGACY, _USED_LEGACY = b"dltensor", b"used_dltensor"


class _Device(Structure):
    _fields_ = [("device_type", c_int32), ("device_id", c_int32)]


class _DataType(Structure):
    _fields_ = [("code", c_uint8), ("bits", c_uint8), ("lanes", c_uint16)]


class _Tensor(Structure):
    _fields_ = [("data", c_void_p), ("device", _Device), ("ndim", c_int32), ("dtype", _DataType),
                ("shape", POINTER(c_int64)), ("strides", POINTER(c_int64)), ("byte_offset", c_uint64)]


class _Managed(Structure):  # DLManagedTensor (legacy)
    _fields_ = [("dl_tensor", _Tensor), ("manager_ctx", c_void_p), ("deleter", c_void_p)]


class _Version(Structure):
    _fields_ = [("major", c_uint32), ("minor", c_uint32)]


class _ManagedVersioned(Structure):  # DLManagedTensorVersioned (DLPack >= 1.0)
    _fields_ = [("version", _Version), ("manager_ctx", c_void_p), ("deleter", c_void_p), ("flags", c_uint64),
                ("dl_tensor", _Tensor)]


_capsule_is_valid = ctypes.pythonapi.PyCapsule_IsValid
_capsule_is_valid.argtypes, _capsule_is_valid.restype = [ctypes.py_object, c_char_p], ctypes.c_int
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.argtypes, _capsule_pointer.restype = [ctypes.py_object, c_char_p], c_void_p
_capsule_rename = ctypes.pythonapi.PyCapsule_SetName
_capsule_rename.argtypes, _capsule_rename.restype = [ctypes.py_object, c_char_p], ctypes.c_int
# Deleters run with the GIL held: a producer's deleter may release Python objects.
_Deleter = PYFUNCTYPE(None, c_void_p)


def exports(obj: Any) -> bool:
    """Whether `obj` offers the DLPack protocol."""
    kind = type(obj)
    return hasattr(kind, "__dlpack__") and hasattr(kind, "__dlpack_device__")


class DLPackArray:
    """A producer's tensor taken from its capsule: data pointer, dtype code (None when trmask has
    no such dtype, then `dtype_name` says what it is), shape and element strides. Owned until this
    object is freed, which calls the producer's deleter."""

    __slots__ = ("_managed", "_deleter", "ptr", "dtype_code", "dtype_name", "shape", "strides", "read_only")

    def __init__(self, name: str, obj: Any):
        self._deleter = None
        device_type, device_id = obj.__dlpack_device__()
        if device_type != _CPU:
            device = _DEVICE_NAMES.get(int(device_type), f"DLPack device type {int(device_type)}")
            raise TrmaskError(f"`{name}` is on the {device} device {device_id}; trmask reads CPU memory: copy it "
                              f"to the CPU first (torch: .cpu(); JAX: jax.device_put(x, jax.devices('cpu')[0]); "
                              f"CuPy: .get())")
        try:
            capsule = obj.__dlpack__(max_version=(1, 0), copy=False)
        except TypeError:  # a producer older than DLPack 1.0's keywords: legacy capsules only
            capsule = _export(name, obj)
        except BufferError as error:
            raise TrmaskError(f"`{name}` cannot be shared without a copy through DLPack: {error}") from None
        tensor, flags = self._take(name, capsule)
        try:
            self._describe(name, tensor, flags)
        except BaseException:
            self.release()
            raise

    def _take(self, name: str, capsule: Any) -> tuple:
        """Ownership of the capsule's tensor (the capsule renamed as used); the tensor and its flags."""
        if _capsule_is_valid(capsule, _VERSIONED):
            address = _capsule_pointer(capsule, _VERSIONED)
            _capsule_rename(capsule, _USED_VERSIONED)
            managed = _ManagedVersioned.from_address(address)
            self._own(address, managed.deleter)
            if managed.version.major != 1:
                self.release()
                raise TrmaskError(f"`{name}` came as a DLPack {managed.version.major}.{managed.version.minor} "
                                  f"tensor; trmask reads DLPack 1.x")
            return managed.dl_tensor, managed.flags
        if _capsule_is_valid(capsule, _LEGACY):
            address = _capsule_pointer(capsule, _LEGACY)
            _capsule_rename(capsule, _USED_LEGACY)
            managed = _Managed.from_address(address)
            self._own(address, managed.deleter)
            return managed.dl_tensor, 0
        raise TrmaskError(f"`{name}`.__dlpack__() returned {type(capsule).__name__}, not an unused DLPack capsule")

    def _own(self, address: int, deleter: int) -> None:
        self._managed = address
        self._deleter = _Deleter(deleter) if deleter else None

    def _describe(self, name: str, tensor: _Tensor, flags: int) -> None:
        dtype = tensor.dtype
        ndim = tensor.ndim
        if ndim < 0:
            raise TrmaskError(f"`{name}` is a DLPack tensor with ndim {ndim}")
        self.shape = tuple(tensor.shape[i] for i in range(ndim))
        if tensor.strides:
            self.strides = tuple(tensor.strides[i] for i in range(ndim))
        else:  # compact row-major (allowed before DLPack 1.2)
            self.strides = tuple(math.prod(self.shape[i + 1:]) for i in range(ndim))
        self.dtype_code = _DTYPES.get((dtype.code, dtype.bits)) if dtype.lanes == 1 else None
        kind = _KIND_NAMES.get(dtype.code)
        self.dtype_name = f"{kind}{dtype.bits}" if kind else f"DLPack type code {dtype.code} ({dtype.bits} bits)"
        if dtype.lanes != 1:
            self.dtype_name += f" x {dtype.lanes} lanes"
        self.ptr = (tensor.data or 0) + tensor.byte_offset
        self.read_only = bool(flags & _READ_ONLY)

    def release(self) -> None:
        """Hands the tensor back to its producer (once)."""
        deleter, self._deleter = self._deleter, None
        if deleter is not None:
            deleter(self._managed)

    def __del__(self):
        self.release()


def _export(name: str, obj: Any) -> Any:
    try:
        return obj.__dlpack__()
    except BufferError as error:
        raise TrmaskError(f"`{name}` cannot be shared through DLPack: {error}") from None
