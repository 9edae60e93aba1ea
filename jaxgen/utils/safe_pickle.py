"""Restricted unpickling of PyTorch checkpoints and NVIDIA StyleGAN2-ADA snapshots.

Threat model: a pickle is a program.  ``GLOBAL``/``STACK_GLOBAL`` import any
``module.name`` and ``REDUCE`` calls it, so ``pickle.load`` or
``torch.load(weights_only=False)`` of a downloaded file can run anything.  NVIDIA
snapshots go further: ``torch_utils.persistence`` embeds each network module's
source, and ``_reconstruct_persistent_obj(meta)`` ``exec``s ``meta['module_src']``.

This module never imports torch and never runs pickled code.  Globals resolve
only through the explicit allow-list ``_ALLOWED``, which maps each name to a
*local stand-in* (a function building numpy data, or an inert marker); any
other global raises :class:`UnsafePickleError` naming it.  Shared stand-ins
refuse pickle ``BUILD``, so one file cannot tamper with later loads.  Results
hold only numpy arrays/scalars, plain containers and the inert records
:class:`PersistentModule` / :class:`TorchModule` (``module_src`` is only hashed) and
:class:`TFNetwork` (``build_module_src`` is only hashed).
Out of scope: denial of service (a malformed pickle can still make CPython's own
unpickler allocate much memory); such failures surface as errors, not code runs.

Formats:

* ``torch.save`` zip format: ``<dir>/data.pkl`` with persistent ids
  ``('storage', storage_type, key, location, numel)``, raw storages in
  ``<dir>/data/<key>``, optional ``<dir>/byteorder``.
* ``torch.save`` legacy format: pickled magic number, protocol version 1001 and
  sys-info dict; the main pickle (ids ``('storage', type, key, location, numel,
  None)``); a pickled list of storage keys; then per key an int64 element count
  and the raw little-endian bytes.
* Plain pickles of torch objects (NVIDIA ``.pkl``): a tensor reduces to
  ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``, its
  storage to ``torch.storage._load_from_bytes(blob)`` with ``blob`` a
  legacy-format ``torch.save`` of that storage.
* TensorFlow-era NVIDIA pickles (StyleGAN2 / StyleGAN2-ADA TF, e.g.
  ``stylegan2-ffhq-config-f.pkl``): a ``(G, D, Gs)`` tuple of
  ``dnnlib.tflib.network.Network`` objects.  Unpickling one calls
  ``Network.__setstate__(state)``, which ``exec``s ``state['build_module_src']``;
  here the class resolves to an inert stand-in that keeps ``name``,
  ``static_kwargs``, ``components`` (sub-networks), ``variables`` ((name, array)
  pairs) and ``build_func_name``, and only a sha256 of the source
  (:func:`load_tf_network_pkl`, :func:`is_tf_network_pkl`).

Tensors are rebuilt with bounds-checked ``as_strided`` views and then copied,
so storage offsets and non-contiguous strides come out as ``t.numpy()`` would.
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import os
import pickle
import pickletools
import struct
import sys
import zipfile
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Dict, Iterator, Optional, Union

import ml_dtypes
import numpy as np

from jaxgen.errors import UserError

__all__ = ["UnsafePickleError", "InvalidCheckpointError", "ModuleRecord", "TorchModule",
           "PersistentModule", "TFNetwork", "load_torch_file", "load_network_pkl",
           "load_tf_network_pkl", "is_tf_network_pkl"]

PathOrFile = Union[str, "os.PathLike[str]", BinaryIO]
_MAGIC_NUMBER, _PROTOCOL_VERSION = 0x1950A86A20F9469CFC6C, 1001
_MAX_OVERLAP_BYTES = 1 << 27  # cap for stride-0 (expanded) tensors bigger than their storage


class UnsafePickleError(UserError, pickle.UnpicklingError):
    """The file references a global outside the allow-list (loading it could run code)."""


class InvalidCheckpointError(UserError, ValueError):
    """The file is truncated, corrupt or not in a supported format."""


@dataclass
class ModuleRecord:
    """Inert stand-in for a ``torch.nn.Module``: its class name and ``__dict__`` state."""

    class_name: str
    state: dict

    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat ``{dotted.name: array}`` like ``torch.nn.Module.state_dict()``, same order."""
        out: dict[str, np.ndarray] = {}
        _collect_state(self, "", out)
        return out


@dataclass
class TorchModule(ModuleRecord):
    """A plain ``torch.nn.modules.*`` module; ``class_name`` is its dotted class path."""


@dataclass
class PersistentModule(ModuleRecord):
    """A ``torch_utils.persistence`` module; its embedded source was never executed."""

    module_src_sha256: str
    module_src_len: int
    version: Optional[int]

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args") or ())

    @property
    def init_kwargs(self) -> dict:
        return dict(self.state.get("_init_kwargs") or {})


@dataclass
class TFNetwork:
    """Inert stand-in for a TensorFlow-era ``dnnlib.tflib.network.Network`` (its source never ran).

    ``variables`` holds this network's own variables ``{local name: array}`` (e.g.
    ``'4x4/Conv/weight'`` [3, 3, in, out]); ``components`` its sub-networks (G:
    ``'mapping'``, ``'synthesis'``); ``static_kwargs`` its constructor kwargs.
    """

    name: str
    version: int
    static_kwargs: dict
    components: Dict[str, "TFNetwork"]
    variables: Dict[str, np.ndarray]
    build_func_name: str
    build_module_src_sha256: str
    build_module_src_len: int
    build_module_name: Optional[str] = None

    def all_variables(self) -> Dict[str, np.ndarray]:
        """Own and sub-network variables, the latter prefixed ``'<component>/'`` (e.g.
        ``'synthesis/noise0'``), as NVIDIA's converter names them."""
        out: Dict[str, np.ndarray] = {}
        _collect_tf(self, "", out, set())
        return out


def _collect_tf(net: TFNetwork, prefix: str, out: Dict[str, np.ndarray], active: set) -> None:
    if id(net) in active:
        raise InvalidCheckpointError(f"TF network {net.name!r}: its components form a cycle")
    active.add(id(net))
    out.update((prefix + name, value) for name, value in net.variables.items())
    for name, comp in net.components.items():
        _collect_tf(comp, f"{prefix}{name}/", out, active)
    active.discard(id(net))


def _collect_state(mod: ModuleRecord, prefix: str, out: dict[str, np.ndarray]) -> None:
    st = mod.state
    for group, skip in (("_parameters", ()), ("_buffers", st.get("_non_persistent_buffers_set") or ())):
        for name, value in (st.get(group) or {}).items():
            if value is not None and name not in skip:
                if not isinstance(value, np.ndarray):
                    raise InvalidCheckpointError(f"{mod.class_name}.{group}[{name!r}] is not a tensor")
                out[prefix + name] = value
    for name, sub in (st.get("_modules") or {}).items():
        if sub is not None:
            if not isinstance(sub, ModuleRecord):
                raise InvalidCheckpointError(f"{mod.class_name}._modules[{name!r}] is not a module")
            _collect_state(sub, f"{prefix}{name}.", out)


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
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "copyreg._reconstructor": _reconstructor,
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_parameter": lambda data, *_: data,  # requires_grad, hooks dropped
    "torch._utils._rebuild_parameter_with_state": lambda data, *_: data,  # ... and state
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
    "torch.storage._load_from_bytes": lambda blob: _load_from_bytes(blob),
    "torch.device": lambda kind, index=None: str(kind) if index is None else f"{kind}:{index}",
    "torch_utils.persistence._reconstruct_persistent_obj": _reconstruct_persistent_obj,
    "numpy.dtype": _np_dtype,
    "_codecs.encode": _latin1,  # how protocol 2 (torch.save's default) pickles bytes
    **{f"numpy.{core}.multiarray._reconstruct": _np_reconstruct for core in ("core", "_core")},
    **{f"numpy.{core}.multiarray.scalar": lambda dt, raw: _array(raw, dt, (), "C")[()]
       for core in ("core", "_core")},
    **{f"numpy.{core}.numeric._frombuffer": _np_frombuffer for core in ("core", "_core")},
}
#: The allow-list, ``"module.name"`` -> local stand-in.  Nothing else resolves, except
#: inert per-name classes for ``torch.nn.modules.*`` (see ``_RestrictedUnpickler``).
_ALLOWED: dict[str, Any] = {
    "collections.OrderedDict": collections.OrderedDict, "builtins.set": set,
    "builtins.frozenset": frozenset, "builtins.dict": dict, "builtins.complex": complex,
    "builtins.object": _OBJECT, "torch.Size": tuple,
    "dnnlib.util.EasyDict": _EasyDict, "dnnlib.EasyDict": _EasyDict, "numpy.ndarray": _NDArrayStub,
    "dnnlib.tflib.network.Network": _TFNetworkStub,  # inert: its build_module_src is never run
    **{n: _Global(n) for n in ("torch.Tensor", "torch._tensor.Tensor", "torch.nn.parameter.Parameter")},
    **{f"{mod}.{kind}Storage": _Global(f"torch.{kind}Storage", dt)
       for kind, dt in _STORAGES.items() for mod in ("torch", "torch.cuda", "torch.storage")},
    **{f"torch.{name}": _Global(f"torch.{name}", dt) for name, dt in _DTYPES.items()},
    **{name: _Global(name, fn=fn) for name, fn in _FUNCTIONS.items()},
}
_MODULE_ALIASES = {"__builtin__": "builtins", "copy_reg": "copyreg", "torch.tensor": "torch._tensor"}
_MODULE_STUBS: dict[str, type] = {}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, source: str, pload: Optional[Callable[[Any], Any]]):
        super().__init__(file)
        self._source, self._pload = source, pload

    def find_class(self, module: str, name: str) -> Any:
        module = _MODULE_ALIASES.get(module, module)
        key = f"{module}.{name}"
        if key in _ALLOWED:
            return _ALLOWED[key]
        if module.startswith("torch.nn.modules.") and all(p.isidentifier() for p in key.split(".")):
            if key not in _MODULE_STUBS:  # a fresh inert class per name (NEWOBJ needs a type)
                _MODULE_STUBS[key] = type(name, (_ModuleStub,), {"qualname": key})
            return _MODULE_STUBS[key]
        raise UnsafePickleError(
            f"{self._source}: refusing to unpickle global '{key}'. This is not a plain weights file: "
            f"pickle.load/torch.load would import '{module}' and could run code from it (or code "
            "embedded in the file). Only tensors, numpy arrays, plain containers, torch.nn modules, "
            "StyleGAN2-ADA persistent modules and TensorFlow-era dnnlib networks are accepted. If you "
            "trust the file, load it once in a sandbox and re-export the weights as a plain state dict "
            "(torch.save(module.state_dict(), path)).")

    def persistent_load(self, pid: Any) -> Any:
        if self._pload is None:
            raise InvalidCheckpointError(f"unexpected persistent id {pid!r}")
        return self._pload(pid)


@contextlib.contextmanager
def _errors(source: str) -> Iterator[None]:
    """Prefix our errors with ``source``; turn any other failure into InvalidCheckpointError."""
    try:
        yield
    except (UnsafePickleError, InvalidCheckpointError) as exc:
        if str(exc).startswith(source):
            raise
        raise type(exc)(f"{source}: {exc}") from exc
    except Exception as exc:  # EOFError, UnpicklingError, BadZipFile, RecursionError, ...
        raise InvalidCheckpointError(
            f"{source}: truncated, corrupt or unsupported file ({type(exc).__name__}: {exc})") from exc


def _unpickle(fh: BinaryIO, source: str, pload: Optional[Callable[[Any], Any]] = None) -> Any:
    with _errors(source):
        return _RestrictedUnpickler(fh, source, pload).load()


def _storage_id(pid: Any, length: int, source: str) -> tuple[np.dtype, str, int]:
    """(dtype, key, numel) of a ``('storage', type, key, location, numel[, view])`` id."""
    if not (isinstance(pid, tuple) and len(pid) == length and pid[0] in ("storage", b"storage")):
        raise InvalidCheckpointError(f"{source}: unknown persistent id {pid!r}")
    stype, key = pid[1], pid[2].decode("ascii") if isinstance(pid[2], bytes) else pid[2]
    if not (isinstance(stype, _Global) and stype.qualname.endswith("Storage") and isinstance(key, str)):
        raise InvalidCheckpointError(f"{source}: unsupported storage {stype!r} / key {key!r}")
    if length == 6 and pid[5] is not None:
        raise InvalidCheckpointError(f"{source}: storage views (torch < 1.0 files) are not supported")
    return stype.dtype, key, _ints(pid[4], 1)[0]  # type: ignore[return-value]


def _load_zip(fh: BinaryIO, source: str) -> Any:
    zf = zipfile.ZipFile(fh)
    names = set(zf.namelist())
    roots = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(roots) != 1:
        raise InvalidCheckpointError(f"{source}: zip file is not a torch.save archive")
    prefix = roots[0][: -len("data.pkl")]
    order = zf.read(prefix + "byteorder").decode() if prefix + "byteorder" in names else "little"
    if order not in ("little", "big"):
        raise InvalidCheckpointError(f"{source}: unknown byte order {order!r}")
    storages: dict[str, _Storage] = {}

    def pload(pid: Any) -> _Storage:
        dtype, key, numel = _storage_id(pid, 5, source)
        if key not in storages:
            name, nbytes = f"{prefix}data/{key}", numel * dtype.itemsize
            if name not in names or zf.getinfo(name).file_size != nbytes:
                raise InvalidCheckpointError(f"{source}: storage {name!r} missing or not {nbytes} bytes")
            storages[key] = _Storage(dtype, nbytes, zf.read(name), swap=order != sys.byteorder)
        return storages[key]

    with zf.open(roots[0]) as data_pkl:
        return _unpickle(data_pkl, source, pload)  # type: ignore[arg-type]


def _load_legacy(fh: BinaryIO, source: str, end: int) -> Any:
    if _unpickle(fh, source) != _MAGIC_NUMBER:
        raise InvalidCheckpointError(f"{source}: not a PyTorch file (bad magic number)")
    if (version := _unpickle(fh, source)) != _PROTOCOL_VERSION:
        raise InvalidCheckpointError(f"{source}: unsupported torch.save protocol version {version!r}")
    _unpickle(fh, source)  # sys info: legacy storages are always written little-endian
    storages: dict[str, _Storage] = {}

    def pload(pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) == 4 and pid[0] in ("module", b"module"):
            if isinstance(pid[1], type) and issubclass(pid[1], _ModuleStub):
                return pid[1]  # class reference in a whole-module save of a torch.nn module
        dtype, key, numel = _storage_id(pid, 6, source)
        return storages.setdefault(key, _Storage(dtype, numel * dtype.itemsize))

    result = _unpickle(fh, source, pload)
    keys = _unpickle(fh, source)
    if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(storages):
        raise InvalidCheckpointError(f"{source}: storage key list does not match the pickled tensors")
    for key in keys:
        st, raw = storages[str(key)], fh.read(8)
        count = struct.unpack("<q", raw)[0] if len(raw) == 8 else -1
        if count * st.dtype.itemsize != st.nbytes or fh.tell() + st.nbytes > end:
            raise InvalidCheckpointError(
                f"{source}: storage {key!r} is truncated or does not hold the expected "
                f"{st.nbytes // st.dtype.itemsize} elements (file says {count})")
        st.data = fh.read(st.nbytes)
    return result


def _load_any(fh: BinaryIO, source: str) -> Any:
    """Object of a ``torch.save`` stream (zip or legacy), still holding stand-ins."""
    start = fh.tell()
    end = fh.seek(0, io.SEEK_END)
    fh.seek(start)
    head = fh.read(262)
    fh.seek(start)
    if not head:
        raise InvalidCheckpointError(f"{source}: file is empty")
    if head[257:262] == b"ustar":
        raise InvalidCheckpointError(f"{source}: pre-0.4 tar-format torch files are not supported")
    return _load_zip(fh, source) if head.startswith(b"PK\x03\x04") else _load_legacy(fh, source, end)


def _load_from_bytes(blob: Any) -> _Storage:
    """Stand-in for ``torch.storage._load_from_bytes``: a legacy ``torch.save`` of one storage."""
    if not isinstance(blob, bytes):
        raise InvalidCheckpointError("torch.storage._load_from_bytes without bytes")
    with _errors("<embedded torch storage>"):
        storage = _load_any(io.BytesIO(blob), "<embedded torch storage>")
    if not isinstance(storage, _Storage):
        raise InvalidCheckpointError("embedded torch.save blob does not hold a storage")
    return storage


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


_TF_STATE_KEYS = ("version", "name", "static_kwargs", "build_module_src", "build_func_name", "variables")


def _fill_tf_network(rec: TFNetwork, state: dict) -> None:
    """Check a ``Network.__setstate__`` state (already finished) and copy it into ``rec``."""
    missing = [k for k in _TF_STATE_KEYS if k not in state]
    if missing:
        raise InvalidCheckpointError(f"dnnlib.tflib.network.Network state lacks {', '.join(missing)}")
    src, comps, variables = state["build_module_src"], state.get("components") or {}, state["variables"]
    if not (type(state["version"]) is int and isinstance(state["name"], str) and isinstance(src, str)
            and isinstance(state["build_func_name"], str) and isinstance(state["static_kwargs"], dict)
            and isinstance(comps, dict) and isinstance(variables, (list, tuple))):
        raise InvalidCheckpointError(f"TF network {state['name']!r:.60}: malformed Network state")
    for key, comp in comps.items():
        if not (isinstance(key, str) and isinstance(comp, TFNetwork)):
            raise InvalidCheckpointError(f"TF network {state['name']!r}: component {key!r:.60} is a "
                                         f"{type(comp).__name__}, not a dnnlib.tflib.network.Network")
    own: Dict[str, np.ndarray] = {}
    for item in variables:
        name, value = item if isinstance(item, (tuple, list)) and len(item) == 2 else (None, None)
        arr = np.asarray(value) if isinstance(value, (np.ndarray, np.generic, float, int)) else None
        if not isinstance(name, str) or name in own or arr is None or arr.dtype.kind not in "biuf":
            raise InvalidCheckpointError(f"TF network {state['name']!r}: variable entry {str(item):.80} "
                                         "is not a unique (name, numeric array) pair")
        own[name] = arr
    module_name = state.get("build_module_name")
    rec.__init__(state["name"], state["version"], dict(state["static_kwargs"]), dict(comps), own,  # type: ignore[misc]
                 state["build_func_name"], hashlib.sha256(src.encode()).hexdigest(), len(src),
                 module_name if isinstance(module_name, str) else None)


@contextlib.contextmanager
def _opened(src: PathOrFile) -> Iterator[tuple[BinaryIO, str]]:
    if isinstance(src, (str, os.PathLike)):
        with open(src, "rb") as fh:
            yield fh, os.fspath(src)
    else:
        yield src, str(getattr(src, "name", "<file object>"))


def load_torch_file(path_or_fileobj: PathOrFile) -> Any:
    """Load a ``torch.save`` file (zip or legacy format) without torch and without running code.

    Tensors and parameters become ``numpy.ndarray`` (bfloat16/float8 via ``ml_dtypes``);
    dicts, ``OrderedDict``s, lists, tuples and scalars are kept.  Raises
    :class:`UnsafePickleError` for a global outside the allow-list and
    :class:`InvalidCheckpointError` (naming the file) for corrupt or unsupported input.
    """
    with _opened(path_or_fileobj) as (fh, source), _errors(source):
        return _finish(_load_any(fh, source), {})


def load_network_pkl(path_or_fileobj: PathOrFile) -> dict[str, Any]:
    """Load an NVIDIA StyleGAN2-ADA snapshot ``.pkl`` without executing its embedded code.

    Returns ``dict(G=..., D=..., G_ema=..., augment_pipe=..., training_set_kwargs=..., **rest)``;
    networks are :class:`PersistentModule` / :class:`TorchModule` records (None if absent)
    and ``training_set_kwargs`` is a plain dict or None.  Errors as :func:`load_torch_file`.
    """
    with _opened(path_or_fileobj) as (fh, source), _errors(source):
        data = _finish(_unpickle(fh, source), {})
    if isinstance(data, tuple) and any(isinstance(v, TFNetwork) for v in data):
        raise InvalidCheckpointError(f"{source}: a TensorFlow-era (G, D, Gs) pickle; read it with "
                                     "load_tf_network_pkl (jaxgen.stylegan2.nvidia_tf converts it)")
    if not isinstance(data, dict):
        raise InvalidCheckpointError(f"{source}: expected a snapshot dict, got {type(data).__name__}")
    for key in ("G", "D", "G_ema", "augment_pipe"):
        if not isinstance(data.get(key), (ModuleRecord, type(None))):
            raise InvalidCheckpointError(f"{source}: snapshot entry {key!r} is not a network")
    if not isinstance(data.get("training_set_kwargs"), (dict, type(None))):
        raise InvalidCheckpointError(f"{source}: training_set_kwargs is not a dict")
    head = {k: data.get(k) for k in ("G", "D", "G_ema", "augment_pipe", "training_set_kwargs")}
    return {**head, **{k: v for k, v in data.items() if k not in head}}


def load_tf_network_pkl(path_or_fileobj: PathOrFile) -> Dict[str, TFNetwork]:
    """Load a TensorFlow-era NVIDIA pickle (StyleGAN2 / StyleGAN2-ADA TF) without running its code.

    Returns ``dict(G=..., D=..., Gs=...)`` of :class:`TFNetwork` records (the file holds the
    tuple ``(G, D, Gs)``).  Errors as :func:`load_torch_file`; anything else in the tuple is
    an :class:`InvalidCheckpointError` naming the entry.
    """
    with _opened(path_or_fileobj) as (fh, source), _errors(source):
        data = _finish(_unpickle(fh, source), {})
    if not (isinstance(data, tuple) and len(data) == 3):
        got = f"a tuple of {len(data)}" if isinstance(data, tuple) else f"a {type(data).__name__}"
        raise InvalidCheckpointError(f"{source}: expected NVIDIA's TensorFlow (G, D, Gs) tuple, got {got}")
    for role, net in zip(("G", "D", "Gs"), data):
        if not isinstance(net, TFNetwork):
            raise InvalidCheckpointError(f"{source}: entry {role} of the (G, D, Gs) tuple is a "
                                         f"{type(net).__name__}, not a dnnlib.tflib.network.Network")
    return dict(zip(("G", "D", "Gs"), data))


_TF_NETWORK_GLOBAL = "dnnlib.tflib.network Network"


def is_tf_network_pkl(path_or_fileobj: PathOrFile, max_ops: int = 64) -> bool:
    """Whether a pickle names ``dnnlib.tflib.network.Network`` among its first ``max_ops``
    opcodes, i.e. is a TensorFlow-era NVIDIA pickle rather than a PyTorch one.

    Cheap (reads a few hundred bytes; nothing is unpickled), for dispatching only: the
    loaders do the real checks.  A file object is left at its original position.
    """
    with _opened(path_or_fileobj) as (fh, _):
        start = fh.tell()
        strings: list = []
        try:
            for i, (op, arg, _pos) in enumerate(pickletools.genops(fh)):
                if i >= max_ops or op.name == "STOP":
                    break
                if op.name in ("GLOBAL", "INST") and arg == _TF_NETWORK_GLOBAL:
                    return True
                if isinstance(arg, str):
                    strings = (strings + [arg])[-2:]
                if op.name == "STACK_GLOBAL" and " ".join(strings) == _TF_NETWORK_GLOBAL:
                    return True
        except Exception:  # not a pickle (a torch zip, garbage): not a TF pickle
            return False
        finally:
            fh.seek(start)
    return False
