"""What `jaxgen.harness.loop.train` checks before it loads data or creates a file.

Why: a bad setting should cost a second and one line, not a model build, a
compilation and a half-made workdir that the next run takes for a run. Three
checks, in the order `train` runs them:

  * `check_config`: the values every trainer shares (config.train.batch_size > 0
    and a multiple of the devices, config.data.resolution in the experiment's
    range and a power of two where its models need one, channels 1 or 3, kimg/epochs >= 0, tick settings >= 1,
    every float finite (a NaN learning rate would fail only after the compilation),
    the model's sizes >= 1) and the paths it names (data.path of a folder source,
    data.val_path, and for a new run transfer.init_from / model.keras_weights) --
    `ConfigError` / `InputMissing` naming the --config flag;
  * `check_workdir`: a --workdir that holds files jaxgen did not write, lies below
    a file, in a folder that cannot be written or inside another run or output is
    refused (`OutputError`); a run's own workdir (its run.json) is resumed;
  * `check_same_config` (before the data) and `check_same_descriptor` (after the
    experiment is built, before any checkpoint is restored): a workdir made by
    another config is refused in one line that lists the fields that differ,
    e.g. `model.channel_base 256 vs 1024, data.resolution 16 vs 32`. Only what
    changes the train state's shapes or meaning counts (`RESUME_FIELDS`: task,
    model, resolution, channels, labels, batch size, plus an experiment's own);
    total_kimg, tick/snapshot intervals, metrics settings, learning rates and
    the data path may change on resume.
"""
from __future__ import annotations

import json
import math
import pathlib
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import jax
from flax.traverse_util import flatten_dict

from jaxgen.errors import ConfigError, InputMissing, OutputError
from jaxgen.harness.checkpoint import DESCRIPTOR, CheckpointError, descriptor_fields, read_descriptor
from jaxgen.utils import outputs

# Config fields whose change makes a workdir another run ("model" = every model.* field).
RESUME_FIELDS = ("task", "data.resolution", "data.channels", "data.conditional", "model",
                 "train.batch_size")
# ... except these: compute precision and a fresh run's initial weights do not change the state.
MAY_CHANGE = ("model.dtype", "model.num_lowp_res", "model.keras_weights")
_KWARGS_MAY_CHANGE = ("dtype", "num_lowp_res")
# The descriptors of runs made before run.json: such a folder is a run when it also has checkpoints.
LEGACY_DESCRIPTORS = ("model.json", "dcgan.json", "classes.json")
# Model sizes (any trainer's config that has them) that must be whole numbers >= 1.
MODEL_SIZES = ("model.channel_base", "model.channel_max", "model.z_dim", "model.w_dim", "model.mapping_layers",
               "model.kwargs.width")
_MISSING = object()


def field(config: Any, dotted: str, default: Any = _MISSING) -> Any:
    """config['a']['b'] for 'a.b' (ConfigDict or dict), or `default` when a part is missing."""
    node = config
    for part in dotted.split("."):
        if not hasattr(node, "keys") or part not in node.keys():
            return default
        node = node[part]
    return node


def check_batch_size(batch_size: Any, num_devices: int, setting: str = "config.train.batch_size") -> int:
    """`batch_size` as int when it is > 0 and splits evenly over `num_devices`, else ConfigError."""
    ok = isinstance(batch_size, int) and not isinstance(batch_size, bool)
    if not ok or batch_size < 1 or batch_size % num_devices:
        example = num_devices * max(1, round(batch_size / num_devices)) if ok and batch_size > 0 else \
            num_devices * 8
        raise ConfigError(f"{setting}={batch_size!r} must be a positive multiple of the {num_devices} "
                          f"device(s), e.g. --{setting}={example}")
    return batch_size


def check_resolution(resolution: Any, lo: int, hi: int, power_of_two: bool = True) -> int:
    """config.data.resolution as int when it is in [lo, hi] (and a power of two where the
    model needs one), else ConfigError."""
    ok = isinstance(resolution, int) and not isinstance(resolution, bool)
    if not ok or not lo <= resolution <= hi or (power_of_two and resolution & (resolution - 1)):
        kind = "a power of two" if power_of_two else "a size"
        raise ConfigError(f"config.data.resolution={resolution!r} must be {kind} from {lo} to "
                          f"{hi}, e.g. --config.data.resolution={max(lo, 64) if hi >= 64 else lo}")
    return resolution


def check_config(config: Any, resolution_range: Tuple[int, int] = (4, 1024), resuming: bool = False,
                 num_devices: Optional[int] = None, power_of_two: bool = True) -> None:
    """The shared settings and the paths of `config` (see the module docstring); fields a
    config does not have are not checked. `resuming`: the workdir holds a checkpoint, so
    the settings that only shape a new run (init_from, keras_weights) are not needed."""
    bs = field(config, "train.batch_size")
    if bs is not _MISSING:
        check_batch_size(bs, jax.device_count() if num_devices is None else num_devices)
    res = field(config, "data.resolution")
    if res is not _MISSING:
        check_resolution(res, *resolution_range, power_of_two=power_of_two)
    ch = field(config, "data.channels")
    if ch is not _MISSING and (ch not in (1, 3) or isinstance(ch, bool)):
        raise ConfigError(f"config.data.channels={ch!r} must be 1 (grayscale) or 3 (RGB)")
    for name, lo in (("total_kimg", 0), ("kimg_per_tick", 0), ("epochs", 0), ("snapshot_ticks", 1),
                     ("image_snapshot_ticks", 1), ("keep_checkpoints", 1)):
        v = field(config, f"train.{name}")
        if v is not _MISSING and not (isinstance(v, (int, float)) and math.isfinite(v) and v >= lo):
            raise ConfigError(f"config.train.{name}={v!r} must be a number >= {lo}")
    check_finite(config)
    check_model_sizes(config)
    check_paths(config, resuming)


def check_finite(config: Any) -> None:
    """ConfigError naming the flag for the first float of `config` (at any depth, in tuples too)
    that is NaN or infinite: such a value passes every range check and fails only after the
    train step compiled (a minute), or trains to NaN."""
    for name, value in _leaves(_plain(config)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"config.{name}={value!r} must be a finite number (not NaN or infinite); "
                              f"pass --config.{name.split('[')[0]}=<a number>")


def check_model_sizes(config: Any) -> None:
    """ConfigError unless the model's sizes that the config has are integers >= 1 (a zero
    channel_max builds layers of no channels, which fail deep in initialisation) and
    model.channel_base leaves >= 1 feature map at config.data.resolution."""
    for name in MODEL_SIZES:
        v = field(config, name)
        if v is not _MISSING and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ConfigError(f"config.{name}={v!r} must be a whole number >= 1, e.g. --config.{name}=16")
    widths = field(config, "model.widths")
    if widths is not _MISSING and not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1
                                          for w in widths):
        raise ConfigError(f"config.model.widths={tuple(widths)!r}: each must be a whole number >= 1")
    base, res = field(config, "model.channel_base"), field(config, "data.resolution")
    if isinstance(base, int) and isinstance(res, int) and res >= 1 and base // res < 1:
        raise ConfigError(f"config.model.channel_base={base} gives no feature maps at {res} px (channel_base "
                          f"// resolution); give at least --config.model.channel_base={res}")


def check_paths(config: Any, resuming: bool = False) -> None:
    """The files and folders `config` names exist (InputMissing naming the flag)."""
    if field(config, "data.source", None) == "folder":
        path = str(field(config, "data.path", ""))      # a .zip is NVIDIA's dataset_tool.py format
        _must_exist(path, "config.data.path", "a folder of images or of class sub-folders, or a "
                    "dataset_tool.py .zip", folder=not path.lower().endswith(".zip"))
    needed = [("data.val_path", "a folder of validation images", True)]
    if field(config, "metrics.every_ticks", 0):
        needed.append(("metrics.inception_weights", "pt_inception-2015-12-05-6726825d.pth", False))
    if not resuming:
        needed += [("transfer.init_from", "a training workdir, networks directory or NVIDIA .pkl", False),
                   ("model.keras_weights", "a Keras ImageNet .h5 file", False)]
    for name, what, folder in needed:
        value = field(config, name, "")
        if value:
            _must_exist(value, f"config.{name}", what, folder)


def _must_exist(value: Any, setting: str, what: str, folder: bool) -> None:
    p = pathlib.Path(str(value)).expanduser()
    if not str(value) or not p.exists():
        raise InputMissing(f"{setting}={str(value)!r} does not exist; pass --{setting}=<{what}>")
    if folder and not p.is_dir():
        raise InputMissing(f"{setting}={str(value)!r} is a file; pass --{setting}=<{what}>")


def check_workdir(workdir: pathlib.Path) -> bool:
    """True when `workdir` holds a checkpoint to resume. OutputError (one line; nothing is
    written) when it lies below a file, in a folder that cannot be written or inside a folder
    jaxgen owns (another run, another command's output: `outputs.check_location`), when it is
    a file, another command's output, or a non-empty folder that is not a run (`is_run`):
    common names (config.json, checkpoints/) do not make the user's folder a run."""
    outputs.check_location(workdir, "--workdir", writes_existing=True)
    if not workdir.exists():
        return False
    if not workdir.is_dir():
        raise OutputError(f"--workdir {workdir} is a file; choose a new --workdir (a folder)")
    marker = outputs.read_marker(workdir)     # training never marks its workdir: a networks dir,
    if marker is not None:                    # an export, a workflow's folder are another's
        raise OutputError(f"--workdir {workdir} holds the output of another jaxgen command "
                          f"({marker.get('kind')!r}), not a training run; choose a new --workdir")
    visible = sorted(p.name for p in workdir.iterdir() if not p.name.startswith("."))
    if visible and not is_run(workdir):
        shown = ", ".join(visible[:5]) + (" ..." if len(visible) > 5 else "")
        raise OutputError(f"--workdir {workdir} holds files jaxgen did not write ({shown}); choose a "
                          "new --workdir (a new or empty folder, or a run of this config to resume)")
    return _has_checkpoint(workdir)


def is_run(workdir: pathlib.Path) -> bool:
    """Whether `workdir` is a jaxgen training run: its run.json descriptor (format jaxgen-run;
    written before the first checkpoint, with config.json), or a descriptor of a jaxgen from
    before run.json (model.json, dcgan.json, classes.json, as `read_descriptor` reads them)
    beside checkpoints."""
    if outputs.run_kind(workdir) is not None:
        return True
    if (workdir / DESCRIPTOR).exists() or not any((workdir / n).is_file() for n in LEGACY_DESCRIPTORS):
        return False
    try:
        read_descriptor(workdir)
    except (CheckpointError, OSError, ValueError):
        return False
    return _has_checkpoint(workdir)


def _has_checkpoint(workdir: pathlib.Path) -> bool:
    """Whether workdir/checkpoints holds a saved step (a folder named by its number)."""
    ckpt = workdir / "checkpoints"
    return ckpt.is_dir() and any(p.name.isdigit() for p in ckpt.iterdir())


def config_differences(old: Dict[str, Any], new: Dict[str, Any], fields: Iterable[str],
                       may_change: Sequence[str] = MAY_CHANGE) -> List[str]:
    """'name old vs new' for each of `fields` (dotted; a prefix covers its sub-fields) whose
    values differ between the flat dicts `old` and `new`; fields missing on either side are
    not compared (an older or newer config)."""
    out = []
    for key in sorted(set(old) & set(new)):
        if key in may_change or not any(key == f or key.startswith(f + ".") for f in fields):
            continue
        if old[key] != new[key]:
            out.append(f"{key} {_show(old[key])} vs {_show(new[key])}")
    return out


def check_same_config(config: Any, workdir: pathlib.Path, fields: Sequence[str] = RESUME_FIELDS) -> None:
    """OutputError when workdir/config.json (a run's config) differs from `config` in `fields`."""
    path = workdir / "config.json"
    if not path.is_file():
        return
    try:
        old = _flat_dotted(json.loads(path.read_text()))
    except (OSError, ValueError):
        return                      # unreadable: check_same_descriptor and the restore decide
    _refuse(workdir, config_differences(old, _flat_dotted(_plain(config)), fields))


def check_same_descriptor(kind: str, descriptor: Dict[str, Any], workdir: pathlib.Path) -> None:
    """OutputError when the workdir's run.json describes another model or data than `descriptor`
    (what this experiment would write: kind, class names, resolution, channels, kwargs)."""
    if not workdir.is_dir():
        return
    try:
        old = read_descriptor(workdir)
    except (CheckpointError, OSError, ValueError):
        return
    new = json.loads(json.dumps(descriptor_fields(kind, **descriptor)))
    keep = ("kind", "resolution", "channels", "model") + (("class_names",) if _labelled(new) else ())
    flat_old = {f"run.json {k}": v for k, v in _flat_dotted(old).items()}
    flat_new = {f"run.json {k}": v for k, v in _flat_dotted(new).items()}
    fields = [f"run.json {k}" for k in keep + tuple(k for k in new if k.endswith("_kwargs"))]
    skip = [k for k in flat_new if k.rsplit(".", 1)[-1] in _KWARGS_MAY_CHANGE and "_kwargs." in k]
    _refuse(workdir, config_differences(flat_old, flat_new, fields, skip))


def _labelled(info: Dict[str, Any]) -> bool:
    """Whether the class names shape the run's model: a classifier's outputs, a conditional
    generator's labels (c_dim / num_classes > 0). An unconditional GAN only records them."""
    kwargs = [v for k, v in info.items() if k.endswith("_kwargs") and isinstance(v, dict)]
    labels = [kw.get("c_dim", kw.get("num_classes")) for kw in kwargs]
    labels = [n for n in labels if n is not None]
    return not labels or any(int(n) > 0 for n in labels)


def _refuse(workdir: pathlib.Path, diffs: List[str]) -> None:
    if diffs:
        shown = ", ".join(diffs[:6]) + (f", and {len(diffs) - 6} more" if len(diffs) > 6 else "")
        raise OutputError(f"--workdir {workdir} holds a run of another config ({shown}; the workdir's "
                          f"vs this config's): resume it with the config it was made with (its "
                          f"config.json), or start fresh with a new --workdir")


def _plain(config: Any) -> Dict[str, Any]:
    """`config` as plain JSON values (tuples -> lists), as config.json stores it."""
    if hasattr(config, "to_json_best_effort"):
        return json.loads(config.to_json_best_effort())
    return json.loads(json.dumps(dict(config), default=str))


def _leaves(tree: Any, prefix: str = "") -> Iterable[Tuple[str, Any]]:
    """('train.betas[1]', value) for every leaf of plain JSON values, lists entered."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            yield from _leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix, tree


def _flat_dotted(tree: Dict[str, Any]) -> Dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists stay values."""
    return flatten_dict(tree, sep=".")


def _show(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, (list, dict, bool)) or v is None else str(v)
    return text if len(text) <= 60 else text[:57] + "..."
