"""Datasets: the embedded procedural demo data and loaders for user data.

Every source gives an `ImageDataset` (images uint8 [N, R, R, C] NHWC, labels
int32 [N], class_names, paths, and `summary`: images per class and, for folders,
source sizes/modes, conversions and skipped files; `summary_line` prints it in one
line). `load_dataset(cfg)` picks the source from a config (a mapping or any object
with attributes):

    source='folder': path, resolution, [channels, require_labels, min_classes,
                     skip_corrupt, cache_dir]
                     (a path ending in .zip, or a folder whose dataset.json has "labels",
                     is NVIDIA's dataset_tool.py layout: jaxgen.data.nvidia_format)
    source='tfds':   name, resolution, [split='train', channels, data_dir,
                     image_key, label_key, max_examples]
    source='demo':   path, resolution, [num_per_class=64, seed=0, classes]
                     (renders the demo set into `path` if absent, then loads it)
    source='depth_demo': path, resolution, [num_per_class=64, seed=0, channels=1]
                     (the grayscale depth-face set of jaxgen.data.depth_faces, same way)
"""
import warnings

from jaxgen.data.demo_faces import DEFAULT_CLASSES, write_demo_dataset
from jaxgen.data.depth_faces import write_depth_dataset
from jaxgen.data.folder import (DatasetError, ImageDataset, basic_summary, load_image_folder,
                                scan_image_folder, summary_line, to_float, to_uint8)
from jaxgen.data.nvidia_format import is_nvidia_dataset, load_nvidia_dataset
from jaxgen.data.tfds_source import load_tfds

__all__ = ["DatasetError", "ImageDataset", "load_dataset", "load_image_folder", "scan_image_folder",
           "summary_line", "to_float", "to_uint8"]

_MISSING = object()


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
        load = load_nvidia_dataset if is_nvidia_dataset(get("path")) else load_image_folder
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
            return load_image_folder(path, resolution, channels, skip_corrupt=get("skip_corrupt", False),
                                     cache_dir=get("cache_dir", None))
    if source == "depth_demo":
        path = get("path")
        write_depth_dataset(path, get("num_per_class", 64), resolution, get("seed", 0),
                            progress=get("progress", True), flag="--config.data.path")
        with warnings.catch_warnings():  # the preview.png next to the class folders
            warnings.filterwarnings("ignore", message="ignoring 1 image")
            return load_image_folder(path, resolution, get("channels", 1),
                                     skip_corrupt=get("skip_corrupt", False),
                                     cache_dir=get("cache_dir", None))
    raise DatasetError(f"unknown dataset source {source!r}: use 'folder', 'tfds', 'demo' "
                       "or 'depth_demo'")
