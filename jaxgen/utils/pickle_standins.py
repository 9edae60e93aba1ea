"""Local stand-ins for the globals a restricted unpickle may name, and how they become values.

Each allowed ``module.name`` of a pickle (``jaxgen.utils.restricted_unpickler._ALLOWED``)
resolves to one of these: an inert marker (:class:`_Global`: a torch dtype or storage type),
a function that builds numpy data (the ``_rebuild_*``, ``_np_*`` functions), or an inert
class (:class:`_ModuleStub`, :class:`_TFNetworkStub`, :class:`_NDArrayStub`,
:class:`_EasyDict`).  Shared stand-ins refuse pickle ``BUILD``, so one file cannot tamper
with later loads.  :func:`_finish` then turns the unpickled object into its final value:
numpy arrays, plain containers and the records of ``jaxgen.utils.pickle_records``.

Tensors are rebuilt with bounds-checked ``as_strided`` views and then copied,
so storage offsets and non-contiguous strides come out as ``t.numpy()`` would.
"""
from __future__ import annotations

import collections
import hashlib
from typing import Any, Callable, Optional

import ml_dtypes
import numpy as np

from jaxgen.utils.pickle_records import (InvalidCheckpointError, ModuleRecord, PersistentModule, TFNetwork,
                                         TorchModule, UnsafePickleError, _fill_tf_network)

_MAX_OVERLAP_BYTES = 1 << 27  # cap for stride-0 (expanded) tensors bigger than their storage


class _Frozen:
    """Slotted, unhashable stand-in on which a pickle ``BUILD`` is refused."""

    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]

    def __setstate__(self, state: Any) -> None:
        raise UnsafePickleError(f"refusing to set pickle state on {self!r}")


class _Global(_Frozen):
    """An allowed global: a data marker (torch dtype/storage type) or a function ``fn``."""

    __slots__ = ("qualname", "dtype", "fn")

    def __init__(self, qualname: str, dtype: Any = None, fn: Optional[Callable[..., Any]] = None):
        self.qualname, self.dtype, self.fn = qualname, None if dtype is None else np.dtype(dtype), fn

    def __call__(self, *args: Any) -> Any:
        if self.fn is None:
            raise InvalidCheckpointError(f"{self.qualname} is not callable")
        return self.fn(*args)

    def __repr__(self) -> str:
        return f"<{self.qualname}>"


class _Storage(_Frozen):
    """Raw bytes of one torch storage (``data`` arrives after the pickle in legacy files)."""

    __slots__ = ("dtype", "nbytes", "data", "swap")

    def __init__(self, dtype: np.dtype, nbytes: int, data: Optional[bytes] = None, swap: bool = False):
        self.dtype, self.nbytes, self.data, self.swap = dtype, nbytes, data, swap


class _Tensor(_Frozen):
    """A tensor's dtype and geometry over a storage; made an array by :func:`_finish`."""

    __slots__ = ("storage", "dtype", "offset", "size", "stride", "metadata")

    def __init__(self, storage: Any, offset: Any, size: Any, stride: Any,
                 dtype: Optional[np.dtype] = None, metadata: Any = None):
        if not isinstance(storage, _Storage):
            raise InvalidCheckpointError("tensor rebuilt from something that is not a storage")
        self.storage, self.dtype = storage, storage.dtype if dtype is None else dtype
        (self.offset,), self.size, self.stride = _ints(offset, 1), _ints(size), _ints(stride)
        if len(self.size) != len(self.stride):
            raise InvalidCheckpointError("tensor size and stride differ in length")
        self.metadata = metadata if isinstance(metadata, dict) else {}

    def materialize(self) -> np.ndarray:
        data, item = self.storage.data, self.dtype.itemsize
        if data is None or len(data) != self.storage.nbytes:
            raise InvalidCheckpointError("tensor storage data is missing")
        numel, count = len(data) // item, int(np.prod(self.size, dtype=object))
        if count == 0:
            return np.zeros(self.size, self.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if last >= numel or (count > numel and count * item > _MAX_OVERLAP_BYTES):
            raise InvalidCheckpointError(f"tensor of size {self.size} exceeds its storage")
        flat = np.frombuffer(data, dtype=self.dtype, count=numel)[self.offset:]
        arr = np.array(np.lib.stride_tricks.as_strided(
            flat, self.size, [s * item for s in self.stride], writeable=False))
        if self.storage.swap and item > 1:
            arr.byteswap(inplace=True)
        arr = np.conj(arr) if self.metadata.get("conj") else arr
        return np.negative(arr) if self.metadata.get("neg") else arr


class _ModuleStub:
    """Instance of an allowed ``torch.nn.modules.*`` class, as made by NEWOBJ + BUILD."""

    __hash__ = None  # type: ignore[assignment]
    qualname, state = "torch.nn.modules.module.Module", None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise InvalidCheckpointError(f"{self.qualname}: module state is not a dict")
        self.state = state


class _TFNetworkStub:
    """Instance of ``dnnlib.tflib.network.Network`` under construction (NEWOBJ + BUILD).

    BUILD stores the state; :func:`_finish` turns it into a :class:`TFNetwork`."""

    __hash__ = None  # type: ignore[assignment]
    state = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise InvalidCheckpointError("dnnlib.tflib.network.Network: state is not a dict")
        self.state = state


class _NDArrayStub:
    """A numpy array under construction (``_reconstruct``, then BUILD with its state)."""

    __hash__ = None  # type: ignore[assignment]
    array: Optional[np.ndarray] = None

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise InvalidCheckpointError("malformed numpy array state")
        self.array = _array(state[4], state[2], state[1], "F" if state[3] else "C")


class _EasyDict(dict):
    """``dnnlib.util.EasyDict`` while unpickling; a plain dict in the result."""

    def __setstate__(self, state: Any) -> None:
        self.update(state if isinstance(state, dict) else {})  # its attributes are its items


def _ints(value: Any, length: Optional[int] = None) -> list[int]:
    seq = list(value) if isinstance(value, (tuple, list)) else [value]
    if not all(type(v) is int and v >= 0 for v in seq) or length not in (None, len(seq)):
        raise InvalidCheckpointError(f"expected non-negative integers, got {value!r}")
    return seq


def _array(raw: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    """Copy of raw bytes as an array; object dtypes (arbitrary Python objects) are refused."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError(f"numpy dtype {dtype!r} is not plain data")
    if not isinstance(raw, (bytes, bytearray)):
        raise InvalidCheckpointError("numpy array data is not raw bytes")
    return np.frombuffer(raw, dtype=dtype).reshape(tuple(_ints(shape)), order=order).copy()  # type: ignore


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                    backward_hooks: Any = None, metadata: Any = None) -> _Tensor:
    return _Tensor(storage, offset, size, stride, metadata=metadata)  # v1 and v2


def _rebuild_tensor_v3(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any,
                       backward_hooks: Any, dtype: Any, metadata: Any = None) -> _Tensor:
    if not isinstance(dtype, _Global) or dtype.dtype is None:
        raise InvalidCheckpointError(f"unsupported tensor dtype {dtype!r}")
    return _Tensor(storage, offset, size, stride, dtype=dtype.dtype, metadata=metadata)


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    """A tensor with Python attributes: rebuilt as a plain tensor (attributes dropped)."""
    if not (isinstance(func, _Global) and func.fn in (_rebuild_tensor, _rebuild_tensor_v3)
            and isinstance(new_type, _Global) and new_type.fn is None and isinstance(args, tuple)):
        raise UnsafePickleError(f"_rebuild_from_type_v2 with disallowed arguments {func!r}, {new_type!r}")
    return func(*args)


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor``, only for allowed classes and without running their code."""
    stub = cls is _TFNetworkStub or (isinstance(cls, type) and issubclass(cls, _ModuleStub))
    if stub and base is _OBJECT and state is None:  # protocol 0/1 form of NEWOBJ
        return cls()
    if cls in (_EasyDict, collections.OrderedDict) and base is dict and isinstance(state, dict):
        return cls(state)
    raise UnsafePickleError(f"copyreg._reconstructor({cls!r}, {base!r}) is not allowed")


def _reconstruct_persistent_obj(meta: Any) -> PersistentModule:
    """Inert replacement of NVIDIA's hook: hashes ``module_src`` instead of exec'ing it."""
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise InvalidCheckpointError("unsupported torch_utils.persistence object")
    src, name, state = meta.get("module_src"), meta.get("class_name"), meta.get("state") or {}
    if not (isinstance(src, str) and isinstance(name, str) and isinstance(state, dict)):
        raise InvalidCheckpointError("malformed torch_utils.persistence metadata")
    return PersistentModule(name, dict(state), hashlib.sha256(src.encode()).hexdigest(),
                            len(src), meta.get("version"))


def _latin1(text: Any, encoding: Any = "utf-8") -> bytes:
    if not (isinstance(text, str) and encoding in ("latin1", "latin-1")):
        raise UnsafePickleError(f"_codecs.encode({text!r:.40}, {encoding!r}) is not allowed")
    return text.encode("latin1")


def _np_reconstruct(cls: Any, shape: Any, code: Any) -> _NDArrayStub:
    if cls is not _NDArrayStub:
        raise UnsafePickleError(f"numpy _reconstruct of {cls!r} is not allowed")
    return _NDArrayStub()


def _np_dtype(spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
    if not isinstance(spec, str) or np.dtype(spec).hasobject:
        raise UnsafePickleError(f"numpy.dtype({spec!r}) is not allowed")
    return np.dtype(spec, align=bool(align), copy=True)  # a copy: BUILD must not touch singletons


def _np_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> _NDArrayStub:
    stub = _NDArrayStub()
    stub.array = _array(buf, dtype, shape, "F" if order == "F" else "C")
    return stub


_OBJECT = _Global("builtins.object")
_STORAGES = {"Double": np.float64, "Float": np.float32, "Half": np.float16,
             "BFloat16": ml_dtypes.bfloat16, "Long": np.int64, "Int": np.int32, "Short": np.int16,
             "Char": np.int8, "Byte": np.uint8, "Bool": np.bool_, "ComplexFloat": np.complex64,
             "ComplexDouble": np.complex128, "Untyped": np.uint8}
_DTYPES = {"float64": np.float64, "float32": np.float32, "float16": np.float16,  # canonical names
           "bfloat16": ml_dtypes.bfloat16, "int64": np.int64, "int32": np.int32, "int16": np.int16,
           "int8": np.int8, "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32,
           "uint64": np.uint64, "bool": np.bool_, "complex64": np.complex64,
           "complex128": np.complex128, **{f"float8_{v}": getattr(ml_dtypes, f"float8_{v}")
                                           for v in ("e4m3fn", "e5m2", "e4m3fnuz", "e5m2fnuz")}}


def _finish(obj: Any, memo: dict[int, tuple[Any, Any]]) -> Any:
    """Replace stand-ins by final values (arrays, dicts, records), keeping shared objects shared."""
    if id(obj) in memo:
        return memo[id(obj)][1]
    res = obj
    if isinstance(obj, _Storage):  # a bare storage: its elements as a 1-D array
        res = _Tensor(obj, 0, obj.nbytes // obj.dtype.itemsize, 1).materialize()
    elif isinstance(obj, _Tensor):
        res = obj.materialize()
    elif isinstance(obj, _NDArrayStub):
        if obj.array is None:
            raise InvalidCheckpointError("numpy array without data")
        res = obj.array
    elif isinstance(obj, _Global):
        res = obj.dtype if obj.dtype is not None else obj.qualname
    elif isinstance(obj, _ModuleStub):
        res = TorchModule(obj.qualname, {})
    elif type(obj) is _EasyDict:
        res = {}
    elif isinstance(obj, _TFNetworkStub):
        res = TFNetwork("", 0, {}, {}, {}, "", "", 0)
    memo[id(obj)] = (obj, res)  # holding obj keeps its id from being reused
    if isinstance(obj, _TFNetworkStub):
        _fill_tf_network(res, _finish(obj.state if obj.state is not None else {}, memo))
    if isinstance(obj, _ModuleStub):
        res.state = _finish(obj.state if obj.state is not None else {}, memo)
    elif isinstance(obj, ModuleRecord):
        if not isinstance(obj.state, dict):
            raise InvalidCheckpointError(f"{obj.class_name}: module state is not a dict")
        obj.state = _finish(obj.state, memo)
    elif isinstance(obj, dict):
        for k, v in list(obj.items()):
            res[k] = _finish(v, memo)
    elif isinstance(obj, list):
        obj[:] = [_finish(v, memo) for v in obj]
    elif isinstance(obj, tuple):  # a cycle back into this tuple sees the original
        res = tuple(_finish(v, memo) for v in obj)
        memo[id(obj)] = (obj, res)
    return res
