"""Checkpoints and the run descriptor: what every trainer writes, what `jaxgen.runs` reads.

Every run directory holds one descriptor, `run.json`:
  {"format": "jaxgen-run", "version": 1, "kind": "stylegan2" | "dcgan" | "classifier",
   "class_names": [...], "resolution": R, "channels": C, ...kind-specific fields}
with G_kwargs/D_kwargs for the GANs and model/model_kwargs for classifiers.

Layout of a training workdir (any kind):
  workdir/run.json                   the descriptor
  workdir/checkpoints/<step>/state   orbax pytree of the whole train state
  workdir/checkpoints/<step>/meta    JSON: kimg, tick, wall time, best score, ...
  workdir/best/<step>/...            the checkpoint with the best score so far

A *networks* directory (what `python -m jaxgen pkl_to_orbax` writes
from an official NVIDIA snapshot) has run.json (kind stylegan2) and
  dir/networks                       orbax pytree {G, D, G_ema}: each {params[, buffers]}

Saves are synchronous and orbax writes into a temporary directory that is
renamed when complete, so a crash (even SIGKILL) leaves the previous
checkpoint intact and never a half-written one.
"""
from __future__ import annotations

import json
import pathlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import orbax.checkpoint as ocp

from jaxgen.errors import UserError

PathLike = Any
RUN_FORMAT = "jaxgen-run"
DESCRIPTOR = "run.json"
KINDS = ("stylegan2", "dcgan", "classifier")


class CheckpointError(UserError, ValueError):
    """A checkpoint path that is missing or not what it claims to be."""


class TrainCheckpointer:
    """Save/restore the TrainState of a run under `workdir/<subdir>` ('checkpoints' for the
    latest ones, 'best' for the best-FID one)."""

    def __init__(self, workdir: PathLike, max_to_keep: Optional[int] = 3, subdir: str = "checkpoints",
                 create: bool = True):
        self.directory = pathlib.Path(workdir).absolute() / subdir
        if not create and not self.directory.is_dir():
            raise CheckpointError(f"{workdir} has no {subdir}/ checkpoints")
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create,
                                               enable_async_checkpointing=False)
        handlers = dict(state=ocp.StandardCheckpointHandler(), meta=ocp.JsonCheckpointHandler())
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    def latest_step(self) -> Optional[int]:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, meta: Dict[str, Any]) -> None:
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
        self.manager.wait_until_finished()

    def restore(self, abstract_state: Any, step: Optional[int] = None) -> Tuple[Any, Dict[str, Any]]:
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        out = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        return out["state"], dict(out["meta"])

    def misfits(self, abstract_state: Any, step: Optional[int] = None) -> List[str]:
        """What keeps checkpoint `step` (default: the latest) from restoring into `abstract_state`,
        from its metadata alone (no array is read, so orbax prints nothing): e.g.
        ['w (16,) saved vs (19,) built'], or ['12 arrays saved vs 14 built', ...] when the trees
        differ; [] when they fit or the metadata cannot tell (then the restore decides)."""
        step = self.latest_step() if step is None else step
        try:
            saved = _leaf_shapes(self.manager.item_metadata(step)["state"].tree)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return []
        built = _leaf_shapes(abstract_state)
        if saved is None or built is None:
            return []
        if set(saved) == set(built):
            return [f"{k} {saved[k]} saved vs {built[k]} built" for k in sorted(saved) if saved[k] != built[k]]
        if sorted(saved.values()) == sorted(built.values()):
            return []          # the same arrays under other names: leave it to orbax
        return ([f"{len(saved)} arrays saved vs {len(built)} built"]
                + [f"{k} only saved" for k in sorted(set(saved) - set(built))[:2]]
                + [f"{k} only built" for k in sorted(set(built) - set(saved))[:2]])

    def restore_raw(self, step: Optional[int] = None) -> Dict[str, Any]:
        """The saved state as nested dicts of arrays (no target structure needed), on this
        process's first device: a run saved on N devices opens on a machine with fewer."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree_util.tree_map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                                        self.manager.item_metadata(step)["state"].tree)
        out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
        return out["state"]

    def close(self) -> None:
        self.manager.close()


def descriptor_fields(kind: str, *, class_names: Sequence[str], resolution: int, channels: int,
                      **fields: Any) -> Dict[str, Any]:
    """The run.json dict of a run of `kind` (see the module docstring): what `write_descriptor`
    writes, and what a resumed run's descriptor is compared with."""
    if kind not in KINDS:
        raise ValueError(f"run kind {kind!r}: one of {', '.join(KINDS)}")
    info = dict(format=RUN_FORMAT, version=1, kind=kind, class_names=[str(c) for c in class_names],
                resolution=int(resolution), channels=int(channels))
    for k, v in fields.items():
        info[k] = _jsonable(v) if k.endswith("_kwargs") else v
    return info


def write_descriptor(directory: PathLike, kind: str, **fields: Any) -> pathlib.Path:
    """Write `directory/run.json` (atomically) for a run of `kind` (see `descriptor_fields`)."""
    info = descriptor_fields(kind, **fields)
    d = pathlib.Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / (DESCRIPTOR + ".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    tmp.replace(d / DESCRIPTOR)
    return d / DESCRIPTOR


def read_descriptor(directory: PathLike) -> Dict[str, Any]:
    """The run.json of a run directory; a descriptor of an older jaxgen (model.json,
    dcgan.json, classes.json) is read into the same fields."""
    d = pathlib.Path(directory)
    path = d / DESCRIPTOR
    if path.is_file():
        info = _read_json(path)
        if info.get("format") != RUN_FORMAT or info.get("kind") not in KINDS:
            raise CheckpointError(f"{path}: not a jaxgen run descriptor (format {info.get('format')!r}, "
                                  f"kind {info.get('kind')!r})")
        return info
    for name, kind in (("model.json", "stylegan2"), ("dcgan.json", "dcgan"), ("classes.json", "classifier")):
        if (d / name).is_file():
            try:
                return _legacy_descriptor(_read_json(d / name), kind)
            except KeyError as e:
                raise CheckpointError(f"{d / name}: an old jaxgen descriptor without {e}") from e
    raise CheckpointError(f"{d} has no {DESCRIPTOR}: it is not a jaxgen run (train one with train.py, "
                          "or convert an NVIDIA .pkl with python -m jaxgen pkl_to_orbax)")


def _read_json(path: pathlib.Path) -> Dict[str, Any]:
    """The JSON object in `path`; CheckpointError (one line) when it is not one."""
    try:
        info = json.loads(path.read_text())
    except ValueError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}); restore it from a copy, or train "
                              "into a new --workdir") from e
    if not isinstance(info, dict):
        raise CheckpointError(f"{path} holds no JSON object; restore it from a copy, or train into a "
                              "new --workdir")
    return info


def _legacy_descriptor(old: Dict[str, Any], kind: str) -> Dict[str, Any]:
    """run.json fields from the descriptor files jaxgen wrote before run.json."""
    info = dict(old, format=RUN_FORMAT, version=1, kind=kind)
    if kind == "stylegan2":
        g = old["G_kwargs"]
        info.update(resolution=g["img_resolution"], channels=g["img_channels"])
    if kind == "dcgan":
        info.update(resolution=old["G_kwargs"]["resolution"], channels=old["G_kwargs"]["channels"])
    info.setdefault("class_names", [])
    return info


def save_networks(directory: PathLike, G_kwargs: Dict[str, Any], D_kwargs: Dict[str, Any],
                  networks: Dict[str, Any], class_names: Sequence[str] = (), **extra: Any) -> pathlib.Path:
    """Write a StyleGAN2 networks directory: networks = {'G': vars, 'D': vars, 'G_ema': vars}."""
    d = pathlib.Path(directory).absolute()
    target = d / "networks"
    if target.exists():
        raise CheckpointError(f"{target} already exists; choose a new output directory")
    d.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(target, networks)
    write_descriptor(d, "stylegan2", class_names=class_names, resolution=G_kwargs["img_resolution"],
                     channels=G_kwargs["img_channels"], G_kwargs=G_kwargs, D_kwargs=D_kwargs, **extra)
    return d


def restore_networks(directory: PathLike) -> Dict[str, Any]:
    """The {'G', 'D', 'G_ema'} variables of a networks directory (see save_networks)."""
    with ocp.StandardCheckpointer() as ckptr:
        return ckptr.restore(pathlib.Path(directory).absolute() / "networks")


def restore_latest_raw(workdir: PathLike, subdir: str = "checkpoints") -> Tuple[Dict[str, Any], int]:
    """(the latest saved train state under workdir/subdir as nested dicts of arrays, its step)."""
    ck = TrainCheckpointer(workdir, max_to_keep=None, subdir=subdir, create=False)
    try:
        step = ck.latest_step()
        return ck.restore_raw(step), step
    finally:
        ck.close()


def _leaf_shapes(tree: Any) -> Optional[Dict[str, Tuple[int, ...]]]:
    """{'opt/0/mu/w': shape} of the leaves of a train state (arrays or ShapeDtypeStructs) or of a
    checkpoint's metadata tree; None when a leaf has no shape (nothing to compare)."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if not hasattr(leaf, "shape"):
            return None
        out[jax.tree_util.keystr(path, simple=True, separator="/")] = tuple(leaf.shape)
    return out


def _jsonable(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    out = {}
    for k, v in kwargs.items():
        if isinstance(v, tuple):
            v = list(v)
        if k == "dtype":
            v = jax.numpy.dtype(v).name
        out[k] = v
    return out
