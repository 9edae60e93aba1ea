"""Datasets: the embedded procedural demo data and loaders for user data.

Every source gives an `ImageDataset` (images uint8 [N, R, R, C] NHWC, labels
int32 [N], class_names, paths, and `summary`: images per class and, for folders,
source sizes/modes, conversions and skipped files; `summary_line` prints it in one
line). `load_dataset(cfg)` picks the source from a config (a mapping or any object
with attributes):

    source='folder': path, resolution, [channels, require_labels, min_classes,
                     skip_corrupt, cache_dir, stream]
                     (a path ending in .zip, or a folder whose dataset.json has "labels",
                     is NVIDIA's dataset_tool.py layout: jaxgen.data.nvidia_format; a folder
                     written by `python -m jaxgen pack` is read by index from its shards,
                     streamed or held in memory by `stream`: jaxgen.data.packed)
    source='tfds':   name, resolution, [split='train', channels, data_dir,
                     image_key, label_key, max_examples]
    source='demo':   path, resolution, [num_per_class=64, seed=0, classes]
                     (renders the demo set into `path` if absent, then loads it)
    source='depth_demo': path, resolution, [num_per_class=64, seed=0, channels=1]
                     (the grayscale depth-face set of jaxgen.data.depth_faces, same way)
"""
import warnings
from typing import Any

from jaxgen.data import folder as _folder
from jaxgen.data.demo_faces import DEFAULT_CLASSES, write_demo_dataset
from jaxgen.data.depth_faces import write_depth_dataset
from jaxgen.data.folder import (DatasetError, ImageDataset, basic_summary, scan_image_folder, summary_line,
                                to_float, to_uint8)
from jaxgen.data.nvidia_format import is_nvidia_dataset, load_nvidia_dataset
from jaxgen.data.packed import PackedImages, is_packed, load_packed, take_rows
from jaxgen.data.tfds_source import load_tfds

__all__ = ["DatasetError", "ImageDataset", "PackedImages", "is_packed", "load_dataset", "load_image_folder",
           "load_packed", "scan_image_folder", "summary_line", "take_rows", "to_float", "to_uint8"]

_MISSING = object()


def load_image_folder(root, resolution: int, channels: int = 3, require_labels: bool = False,
                      min_classes: int = 1, skip_corrupt: bool = False, cache_dir: Any = "auto",
                      num_threads=None, stream: Any = "auto") -> ImageDataset:
    """`jaxgen.data.folder.load_image_folder`, or `load_packed` when `root` is a packed folder
    (so every command that takes a folder of real images takes a pack too)."""
    if is_packed(root):
        return load_packed(root, resolution, channels, require_labels=require_labels,
                           min_classes=min_classes, stream=stream, threads=num_threads)
    return _folder.load_image_folder(root, resolution, channels, require_labels=require_labels,
                                     min_classes=min_classes, skip_corrupt=skip_corrupt,
                                     cache_dir=cache_dir, num_threads=num_threads)


def load_dataset(cfg) -> ImageDataset:
    """Load the dataset that `cfg` describes (see the module docstring); its `summary` is set."""
    ds = _load(cfg)
    if ds.summary is None:
        ds.summary = basic_summary(ds, str(cfg.get("source") if hasattr(cfg, "get") else cfg.source))
    return ds


def _load(cfg) -> ImageDataset:
    """The dataset of `cfg`, from the source it names."""
    def get(key, default=_MISSING):
        value = cfg.get(key, _MISSING) if hasattr(cfg, "get") else getattr(cfg, key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise DatasetError(f"dataset config needs {key!r} (source={source!r})")
            return default
        return value

    source = None
    source = get("source")
    resolution, channels = get("resolution"), get("channels", 3)
    if source == "folder":
        if is_packed(get("path")):
            return load_packed(get("path"), resolution, channels, require_labels=get("require_labels", False),
                               min_classes=get("min_classes", 1), stream=get("stream", "auto"))
        load = load_nvidia_dataset if is_nvidia_dataset(get("path")) else _folder.load_image_folder
        return load(get("path"), resolution, channels, require_labels=get("require_labels", False),
                    min_classes=get("min_classes", 1), skip_corrupt=get("skip_corrupt", False),
                    cache_dir=get("cache_dir", "auto"))
    if source == "tfds":
        return load_tfds(get("name"), get("split", "train"), resolution, channels,
                         data_dir=get("data_dir", None), image_key=get("image_key", "image"),
                         label_key=get("label_key", "label"),
                         max_examples=get("max_examples", None))
    if source == "demo":
        path = get("path")
        write_demo_dataset(path, get("num_per_class", 64), resolution, get("seed", 0),
                           get("classes", DEFAULT_CLASSES), progress=get("progress", True),
                           flag="--config.data.path", version=get("demo_version", 1))
        with warnings.catch_warnings():  # the preview.png next to the class folders
            warnings.filterwarnings("ignore", message="ignoring 1 image")
            return _folder.load_image_folder(path, resolution, channels, skip_corrupt=get("skip_corrupt", False),
                                     cache_dir=get("cache_dir", None))
    if source == "depth_demo":
        path = get("path")
        write_depth_dataset(path, get("num_per_class", 64), resolution, get("seed", 0),
                            progress=get("progress", True), flag="--config.data.path")
        with warnings.catch_warnings():  # the preview.png next to the class folders
            warnings.filterwarnings("ignore", message="ignoring 1 image")
            return _folder.load_image_folder(path, resolution, get("channels", 1),
                                     skip_corrupt=get("skip_corrupt", False),
                                     cache_dir=get("cache_dir", None))
    raise DatasetError(f"unknown dataset source {source!r}: use 'folder', 'tfds', 'demo' "
                       "or 'depth_demo'")
