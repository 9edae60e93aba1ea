"""The inert records and errors of the restricted unpickler (``jaxgen.utils.safe_pickle``).

What a load returns besides numpy arrays and plain containers: :class:`TorchModule` /
:class:`PersistentModule` (a ``torch.nn.Module``'s class name and ``__dict__`` state; a
persistent module's embedded source only hashed) and :class:`TFNetwork` (a TensorFlow-era
``dnnlib`` network; its ``build_module_src`` only hashed), and the two errors every loader
raises: :class:`UnsafePickleError` (a global outside the allow-list) and
:class:`InvalidCheckpointError` (truncated, corrupt or unsupported input).
"""
from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

from jaxgen.errors import UserError

__all__ = ["UnsafePickleError", "InvalidCheckpointError", "ModuleRecord", "TorchModule",
           "PersistentModule", "TFNetwork"]


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
