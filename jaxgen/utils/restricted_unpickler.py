"""The restricted unpickler: the allow-list of globals, and the ``torch.save`` streams it reads.

Globals resolve only through the explicit allow-list ``_ALLOWED``, which maps each name to a
local stand-in (``jaxgen.utils.pickle_standins``); any other global raises
:class:`UnsafePickleError` naming it.  The ``torch.save`` readers (zip and legacy format)
live here too because the unpickler recurses into them: a tensor of an NVIDIA ``.pkl``
reduces to ``torch.storage._load_from_bytes(blob)``, ``blob`` a legacy ``torch.save`` of
its storage.  Public entry points: ``jaxgen.utils.safe_pickle``.
"""
from __future__ import annotations

import collections
import contextlib
import io
import pickle
import struct
import sys
import zipfile
from typing import Any, BinaryIO, Callable, Iterator, Optional

import numpy as np

from jaxgen.utils.pickle_records import InvalidCheckpointError, UnsafePickleError
from jaxgen.utils.pickle_standins import (_DTYPES, _OBJECT, _STORAGES, _array, _EasyDict, _Global, _ints,
                                          _latin1, _ModuleStub, _NDArrayStub, _np_dtype, _np_frombuffer,
                                          _np_reconstruct, _rebuild_from_type_v2, _rebuild_tensor,
                                          _rebuild_tensor_v3, _reconstruct_persistent_obj, _reconstructor,
                                          _Storage, _TFNetworkStub)

_MAGIC_NUMBER, _PROTOCOL_VERSION = 0x1950A86A20F9469CFC6C, 1001


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
