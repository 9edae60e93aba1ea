"""One way to open anything jaxgen trained or converted: `open_run(path) -> Run`.

`path` may be
  * a training workdir of any kind (StyleGAN2-ADA, conditional DCGAN, classifier):
    its `run.json` says the kind, its latest (or best) checkpoint gives the weights;
  * a StyleGAN2 networks directory (`python -m jaxgen pkl_to_orbax` output);
  * an official NVIDIA StyleGAN2-ADA snapshot `.pkl` (PyTorch, or a TensorFlow-era
    StyleGAN2 / StyleGAN2-ADA pickle such as stylegan2-ffhq-config-f.pkl), read by the
    restricted unpickler (the source code it embeds never runs).

The returned `Run` is the same record for every kind: the module to apply
(`model`: G for generators, the network for classifiers), its `variables`
(G_ema for StyleGAN2, the EMA teacher G for the DCGAN, params + batch_stats
for classifiers), class names, resolution, channels and the descriptor; GAN
runs also carry their discriminator. `Run.generate(z, labels)` samples any
generator run, so callers never ask which kind of GAN they hold.

Which checkpoint: `which='latest'`, `'best'` (the best-FID / best-validation
one), or `'auto'` (best for classifiers, latest for generators). Errors name
the path and say what was expected.
"""
from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any, Dict, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.classifiers.models import build_classifier
from jaxgen.dcgan import models as dcgan_models
from jaxgen.harness import checkpoint as ckpt
from jaxgen.stylegan2 import networks as sg2_networks
from jaxgen.stylegan2.nvidia import ConversionError
from jaxgen.stylegan2.pkl_to_orbax import convert_snapshot
from jaxgen.errors import UserError
from jaxgen.utils.labels import one_hot_labels

GENERATOR_KINDS = ("stylegan2", "dcgan")


class RunError(UserError, ValueError):
    """A path that is not a run of the kind asked for; the message says what to give."""


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
    """A trained (or converted) model, ready to apply.

    kind: 'stylegan2' | 'dcgan' | 'classifier'. model.apply(variables, ...) runs it:
      stylegan2  G(z [N, z_dim], c one-hot [N, c_dim], truncation_psi, noise_mode) -> [N, R, R, C]
      dcgan      G(z [N, z_dim], labels int [N]) -> [N, R, R, C]
      classifier f(x [N, R, R, C] in [-1, 1], train=False) -> logits [N, K]
    images in [-1, 1]. `networks` ({'G', 'D', 'G_ema'}) is set for StyleGAN2 runs
    (transfer learning needs all three).
    """

    kind: str
    path: str
    model: Any
    variables: Any
    class_names: Tuple[str, ...]
    resolution: int
    channels: int
    info: Dict[str, Any]
    discriminator: Any = None
    d_variables: Any = None
    networks: Optional[Dict[str, Any]] = None
    step: Optional[int] = None          # the checkpoint's step (None: networks dir, .pkl)

    @property
    def num_classes(self) -> int:
        """Classes the model is conditioned on (generators) or predicts (classifiers); 0 = none."""
        if self.kind == "stylegan2":
            return int(self.model.c_dim)
        if self.kind == "dcgan":
            return int(self.model.num_classes)
        return len(self.class_names)

    @property
    def z_dim(self) -> int:
        return int(self.model.z_dim)

    def generate(self, z, labels=None, psi: float = 1.0, noise_mode: str = "const") -> np.ndarray:
        """Images float32 [N, R, R, C] in [-1, 1] from latents z [N, z_dim] and class ints
        labels [N] (ignored by an unconditional G). psi truncates StyleGAN2's w."""
        if self.kind not in GENERATOR_KINDS:
            raise RunError(f"{self.path} is a {self.kind} run, not a generator")
        z = jnp.asarray(z, jnp.float32)
        labels = np.zeros(len(z), np.int32) if labels is None else np.asarray(labels, np.int32)
        fn = _sampler(self.model, self.kind, float(psi), noise_mode)
        if self.kind == "stylegan2":
            return np.asarray(fn(self.variables, z, one_hot_labels(labels, self.num_classes)))
        return np.asarray(fn(self.variables, z, jnp.asarray(labels)))


@functools.lru_cache(maxsize=32)
def _sampler(model: Any, kind: str, psi: float, noise_mode: str):
    """One jitted sampling function per (module, kind, psi, noise mode)."""
    if kind == "stylegan2":
        return jax.jit(lambda v, z, c: model.apply(v, z, c, truncation_psi=psi, noise_mode=noise_mode))
    return jax.jit(lambda v, z, c: model.apply(v, z, c))


def open_run(path, which: str = "auto", kinds: Sequence[str] = ckpt.KINDS) -> Run:
    """The `Run` at `path` (a workdir, networks directory or NVIDIA .pkl; see the module doc).

    kinds: the kinds the caller accepts; anything else is a RunError naming what it is.
    """
    if which not in ("auto", "latest", "best"):
        raise RunError(f"which={which!r}: 'auto', 'latest' or 'best'")
    p = pathlib.Path(path)
    if not p.exists():
        raise RunError(f"{path} does not exist (a training workdir, networks directory or NVIDIA .pkl)")
    if p.is_file():
        if p.suffix != ".pkl":
            raise RunError(f"{path} is a file but not an NVIDIA snapshot .pkl")
        run = _open_pkl(p)
    else:
        info = ckpt.read_descriptor(p)
        opener = {"stylegan2": _open_stylegan2, "dcgan": _open_dcgan, "classifier": _open_classifier}
        run = opener[info["kind"]](p, info, which)
    if run.kind not in kinds:
        raise RunError(f"{path} is a {run.kind} run; expected {' or '.join(kinds)}")
    return run


def is_run(path) -> bool:
    """True when `path` is a run `open_run` can open (a run directory or an NVIDIA .pkl)."""
    p = pathlib.Path(path)
    if p.is_file():
        return p.suffix == ".pkl"
    try:
        ckpt.read_descriptor(p)
    except ckpt.CheckpointError:
        return False
    return True


def fingerprint_files(path) -> list:
    """The files whose change means the run at `path` changed (descriptor, checkpoint steps)."""
    p = pathlib.Path(path)
    if p.is_file():
        return [p]
    names = (ckpt.DESCRIPTOR, "model.json", "dcgan.json", "classes.json")
    steps = [s for sub in ("checkpoints", "networks") if (p / sub).is_dir() for s in sorted((p / sub).iterdir())]
    return [p / n for n in names if (p / n).is_file()] + steps


def _subdir(p: pathlib.Path, which: str, default: str) -> str:
    """'checkpoints' or 'best', per `which`, checking that it exists."""
    sub = {"latest": "checkpoints", "best": "best", "auto": default}[which]
    if not (p / sub).is_dir():
        hint = " (no best checkpoint: FID during training was off)" if sub == "best" else ""
        raise RunError(f"{p} has no {sub}/ checkpoint{hint}")
    return sub


def _class_names(info: Dict[str, Any], k: int) -> Tuple[str, ...]:
    names = list(info.get("class_names") or [])
    return tuple(names) if len(names) == k else tuple(f"class{i}" for i in range(k))


def _stylegan2_run(path, info: Dict[str, Any], nets: Dict[str, Any]) -> Run:
    G, D = sg2_networks.build(info["G_kwargs"], info["D_kwargs"])
    return Run("stylegan2", str(path), G, nets["G_ema"], _class_names(info, G.c_dim), G.img_resolution,
               G.img_channels, info, D, nets.get("D"), nets)


def _open_pkl(p: pathlib.Path) -> Run:
    """The Run of an NVIDIA snapshot; a pickle of anything else is a ConversionError naming it."""
    try:
        kw, nets = convert_snapshot(p)
    except ConversionError as e:
        raise ConversionError(f"{p}: {e}") from e
    g = kw["G_kwargs"]
    info = dict(format=ckpt.RUN_FORMAT, version=1, kind="stylegan2", source=str(p.absolute()),
                resolution=g["img_resolution"], channels=g["img_channels"], class_names=[], **kw)
    return _stylegan2_run(p, info, nets)


def _open_stylegan2(p: pathlib.Path, info: Dict[str, Any], which: str) -> Run:
    if (p / "networks").is_dir():
        return _stylegan2_run(p, info, ckpt.restore_networks(p))
    s, step = ckpt.restore_latest_raw(p, _subdir(p, which, "checkpoints"))
    nets = dict(G=dict(params=s["g_params"], buffers=s["g_buffers"]), D=dict(params=s["d_params"]),
                G_ema=dict(params=s["ema_params"], buffers=s["ema_buffers"]))
    return dataclasses.replace(_stylegan2_run(p, info, nets), step=step)


def _open_dcgan(p: pathlib.Path, info: Dict[str, Any], which: str) -> Run:
    G, D = dcgan_models.build(info["G_kwargs"], info["D_kwargs"])
    s, step = ckpt.restore_latest_raw(p, _subdir(p, which, "checkpoints"))
    return Run("dcgan", str(p), G, {"params": s["g_teacher"]}, _class_names(info, G.num_classes),
               G.resolution, G.channels, info, D, {"params": s["d_params"]}, step=step)


def _open_classifier(p: pathlib.Path, info: Dict[str, Any], which: str) -> Run:
    names = tuple(info["class_names"])
    model = build_classifier(info["model"], len(names), **info.get("model_kwargs", {}))
    s, step = ckpt.restore_latest_raw(p, _subdir(p, which, "best"))
    return Run("classifier", str(p), model, {"params": s["params"], "batch_stats": s["batch_stats"]},
               names, int(info["resolution"]), int(info.get("channels", 3)), info, step=step)


def checkpoint_steps(path) -> Tuple[int, ...]:
    """The steps of the training checkpoints kept in workdir `path` (ascending; () when none)."""
    d = pathlib.Path(path) / "checkpoints"
    return tuple(sorted(int(c.name) for c in d.iterdir() if c.name.isdigit())) if d.is_dir() else ()


def snapshot_networks(workdir, out, step: Optional[int] = None) -> pathlib.Path:
    """Write the StyleGAN2 networks of `workdir`'s checkpoint at `step` (default the latest) as a
    networks directory `out` that `open_run` opens: a generator frozen at that point of training
    while the run goes on (the utility curve samples 1/4, 1/2 and all of a budget this way).

    A missing step is a RunError listing the kept ones; `out` must not exist yet."""
    p = pathlib.Path(workdir)
    info = ckpt.read_descriptor(p)
    if info["kind"] != "stylegan2":
        raise RunError(f"{workdir} is a {info['kind']} run; snapshots are of StyleGAN2 runs")
    kept = checkpoint_steps(p)
    if step is not None and int(step) not in kept:
        raise RunError(f"{workdir} has no checkpoint at step {step}; kept steps: {list(kept)}")
    ck = ckpt.TrainCheckpointer(p, max_to_keep=None, create=False)
    try:
        step = ck.latest_step() if step is None else int(step)
        s = ck.restore_raw(step)
    finally:
        ck.close()
    nets = dict(G=dict(params=s["g_params"], buffers=s["g_buffers"]), D=dict(params=s["d_params"]),
                G_ema=dict(params=s["ema_params"], buffers=s["ema_buffers"]))
    return ckpt.save_networks(out, info["G_kwargs"], info["D_kwargs"], nets, class_names=info.get("class_names", []),
                              source=str(p.absolute()), step=int(step))
