"""Restricted unpickling of PyTorch checkpoints and NVIDIA StyleGAN2-ADA snapshots.

Threat model: a pickle is a program.  ``GLOBAL``/``STACK_GLOBAL`` import any
``module.name`` and ``REDUCE`` calls it, so ``pickle.load`` or
``torch.load(weights_only=False)`` of a downloaded file can run anything.  NVIDIA
snapshots go further: ``torch_utils.persistence`` embeds each network module's
source, and ``_reconstruct_persistent_obj(meta)`` ``exec``s ``meta['module_src']``.

This module (the loaders) and its parts never import torch and never run pickled
code.  Globals resolve only through the explicit allow-list ``_ALLOWED``
(``jaxgen.utils.restricted_unpickler``), which maps each name to a *local stand-in*
(``jaxgen.utils.pickle_standins``: a function building numpy data, or an inert
marker); any other global raises :class:`UnsafePickleError` naming it.  Shared
stand-ins refuse pickle ``BUILD``, so one file cannot tamper with later loads.
Results hold only numpy arrays/scalars, plain containers and the inert records of
``jaxgen.utils.pickle_records``: :class:`PersistentModule` / :class:`TorchModule`
(``module_src`` is only hashed) and :class:`TFNetwork` (``build_module_src`` is only
hashed); the errors :class:`UnsafePickleError` and :class:`InvalidCheckpointError`
live there too.
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

import contextlib
import os
import pickletools
from typing import Any, BinaryIO, Dict, Iterator, Union

from jaxgen.utils.pickle_records import InvalidCheckpointError, ModuleRecord, TFNetwork
from jaxgen.utils.pickle_standins import _finish
from jaxgen.utils.restricted_unpickler import _errors, _load_any, _unpickle

__all__ = ["load_torch_file", "load_network_pkl", "load_tf_network_pkl", "is_tf_network_pkl"]

PathOrFile = Union[str, "os.PathLike[str]", BinaryIO]


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
