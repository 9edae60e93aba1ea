"""Checkpoints: the resumable train state, and stand-alone network checkpoints.

Layout of a training workdir:
  workdir/model.json                 G and D constructor kwargs (+ class names)
  workdir/checkpoints/<step>/state   orbax pytree of the whole TrainState
  workdir/checkpoints/<step>/meta    JSON: kimg, tick, ADA p, wall time, ...
  workdir/best/<step>/...            the checkpoint with the lowest FID so far

A *networks* checkpoint (what `python -m jaxgen.stylegan2.pkl_to_orbax` writes
from an official NVIDIA snapshot) has:
  dir/model.json                     {"format": "jaxgen-networks", G_kwargs, D_kwargs, ...}
  dir/networks                       orbax pytree {G, D, G_ema}: each {params[, buffers]}

Saves are synchronous and orbax writes into a temporary directory that is
renamed when complete, so a crash (even SIGKILL) leaves the previous
checkpoint intact and never a half-written one.
"""
from __future__ import annotations

import json
import pathlib
from typing import Any, Dict, Optional, Tuple

import jax
import orbax.checkpoint as ocp

PathLike = Any
NETWORKS_FORMAT = "jaxgen-networks"


class CheckpointError(ValueError):
    """A checkpoint path that is missing or not what it claims to be."""


class TrainCheckpointer:
    """Save/restore the TrainState of a run under `workdir/<subdir>` ('checkpoints' for the
    latest ones, 'best' for the best-FID one)."""

    def __init__(self, workdir: PathLike, max_to_keep: Optional[int] = 3, subdir: str = "checkpoints"):
        self.directory = pathlib.Path(workdir).absolute() / subdir
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                               enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=("state", "meta"))

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

    def restore_raw(self, step: Optional[int] = None) -> Dict[str, Any]:
        """The saved state as nested dicts of arrays (no target structure needed)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
        return out["state"]

    def close(self) -> None:
        self.manager.close()


def write_model_json(directory: PathLike, G_kwargs: Dict[str, Any], D_kwargs: Dict[str, Any],
                     **extra: Any) -> None:
    d = pathlib.Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    info = dict(format=NETWORKS_FORMAT, version=1, G_kwargs=_jsonable(G_kwargs),
                D_kwargs=_jsonable(D_kwargs), **extra)
    tmp = d / "model.json.tmp"
    tmp.write_text(json.dumps(info, indent=2))
    tmp.replace(d / "model.json")


def read_model_json(directory: PathLike) -> Dict[str, Any]:
    path = pathlib.Path(directory) / "model.json"
    if not path.exists():
        raise CheckpointError(f"{directory} has no model.json: it is not a jaxgen networks checkpoint "
                              "or training workdir")
    info = json.loads(path.read_text())
    if info.get("format") != NETWORKS_FORMAT:
        raise CheckpointError(f"{path}: unknown format {info.get('format')!r}")
    return info


def save_networks(directory: PathLike, G_kwargs: Dict[str, Any], D_kwargs: Dict[str, Any],
                  networks: Dict[str, Any], **extra: Any) -> pathlib.Path:
    """Write a networks checkpoint: networks = {'G': vars, 'D': vars, 'G_ema': vars}."""
    d = pathlib.Path(directory).absolute()
    target = d / "networks"
    if target.exists():
        raise CheckpointError(f"{target} already exists; choose a new output directory")
    d.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(target, networks)
    write_model_json(d, G_kwargs, D_kwargs, **extra)
    return d


def load_networks(directory: PathLike, subdir: str = "checkpoints") -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(model info from model.json, {'G', 'D', 'G_ema'} variables) of a networks checkpoint
    or of the latest checkpoint of a training workdir (`subdir='best'`: its best-FID one)."""
    d = pathlib.Path(directory).absolute()
    info = read_model_json(d)
    if (d / "networks").exists():
        with ocp.StandardCheckpointer() as ckptr:
            nets = ckptr.restore(d / "networks")
        return info, nets
    if (d / subdir).exists():
        ck = TrainCheckpointer(d, max_to_keep=None, subdir=subdir)
        try:
            s = ck.restore_raw()
        finally:
            ck.close()
        nets = dict(G=dict(params=s["g_params"], buffers=s["g_buffers"]),
                    D=dict(params=s["d_params"]),
                    G_ema=dict(params=s["ema_params"], buffers=s["ema_buffers"]))
        return info, nets
    raise CheckpointError(f"{d} has model.json but neither networks/ nor {subdir}/")


def _jsonable(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    out = {}
    for k, v in kwargs.items():
        if isinstance(v, tuple):
            v = list(v)
        if k == "dtype":
            v = jax.numpy.dtype(v).name
        out[k] = v
    return out
