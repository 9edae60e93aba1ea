"""Load an image dataset that TensorFlow Datasets has already prepared on disk.

Why: public face/skin data sets are often distributed as TFDS builders. The
training machines have no internet, so this loader never downloads: the data
must have been prepared beforehand (`tfds build NAME --data_dir=DIR` on a
machine with internet, then DIR copied over). It reads one split into the same
`ImageDataset` as the folder loader -- images uint8 [N, R, R, C] NHWC, each
resized so its short side is R (antialiased LANCZOS) and centre-cropped,
labels int32 [N] -- so everything downstream is source-agnostic.

`tensorflow_datasets` (and TensorFlow) are imported only when `load_tfds` is
called, so the rest of jaxgen works without them.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from jaxgen.data.folder import (DatasetError, ImageDataset, check_channels,
                                check_resolution, prepare_image)


def _prepare_hint(name: str, data_dir: Optional[str]) -> str:
    where = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets (default)"
    return (f"jaxgen reads TFDS data offline (download=False) and looked in {where}. On a "
            f"machine with internet run `tfds build {name.split(':')[0]} --data_dir=DIR` "
            f"(or tfds.builder('{name}', data_dir=DIR).download_and_prepare()), copy DIR "
            "here and pass data_dir=DIR (or set TFDS_DATA_DIR). Datasets that need a manual "
            "download also need --manual_dir.")


def _import_tfds():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DatasetError("load_tfds needs TensorFlow Datasets: pip install tensorflow-cpu "
                           f"tensorflow-datasets ({e})") from e
    try:  # keep TensorFlow off any GPU/TPU: the accelerator belongs to JAX
        tf.config.set_visible_devices([], "GPU")
    except (RuntimeError, ValueError):
        pass  # already initialised; harmless for the CPU build
    return tfds


def _to_pil(arr: np.ndarray, key: str) -> Image.Image:
    """A TFDS image array [H, W, C] or [H, W] (uint8/uint16/float) as a PIL image."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise DatasetError(f"feature {key!r} has shape {arr.shape}; expected an image "
                           "[H, W], [H, W, 1], [H, W, 3] or [H, W, 4]. Pass image_key=... .")
    if arr.dtype == np.uint16:
        if arr.ndim == 2:
            return Image.fromarray(arr, mode="I;16")
        arr = np.rint(arr / 257.0).astype(np.uint8)
    elif arr.dtype.kind == "f":
        scale = 255.0 if np.nanmax(arr, initial=0) <= 1.0 else 1.0
        arr = np.clip(np.rint(np.nan_to_num(arr) * scale), 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def open_tfds(name: str, split: str, resolution: int, channels: int = 3,
              data_dir: Optional[str] = None, image_key: str = "image",
              label_key: Optional[str] = "label",
              max_examples: Optional[int] = None) -> "TfdsSplit":
    """The prepared TFDS split `split` of `name`, checked (offline; see `load_tfds`) but not
    read: its examples come one at a time from `TfdsSplit.examples`, so a large split is
    never held whole (`jaxgen.data.pack` streams it into shards)."""
    resolution, channels = check_resolution(resolution), check_channels(channels)
    if max_examples is not None and int(max_examples) < 1:
        raise DatasetError(f"max_examples must be >= 1 or None, got {max_examples}")
    tfds = _import_tfds()
    data_dir = os.fspath(os.path.expanduser(data_dir)) if data_dir is not None else None
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # noqa: BLE001 - DatasetNotFoundError and friends
        raise DatasetError(f"TFDS dataset {name!r} was not found ({type(e).__name__}). "
                           + _prepare_hint(name, data_dir)) from e
    if not builder.is_prepared():
        raise DatasetError(f"TFDS dataset {name!r} is not prepared in {builder.data_dir}. "
                           + _prepare_hint(name, data_dir))
    features = builder.info.features
    keys = sorted(features.keys())
    if image_key not in features:
        raise DatasetError(f"TFDS dataset {name!r} has no feature {image_key!r} (it has "
                           f"{keys}): pass image_key=<one of them>.")
    if label_key is not None and label_key not in features:
        raise DatasetError(f"TFDS dataset {name!r} has no feature {label_key!r} (it has "
                           f"{keys}): pass label_key=<one of them>, or label_key=None for "
                           "unlabelled data.")
    try:
        ds = builder.as_dataset(split=split, shuffle_files=False)
    except Exception as e:  # noqa: BLE001 - unknown split or bad slice syntax
        raise DatasetError(f"cannot read split {split!r} of TFDS dataset {name!r}: {e}. "
                           f"Available splits: {sorted(builder.info.splits.keys())}.") from e
    if max_examples is not None:
        ds = ds.take(int(max_examples))
    names = getattr(features[label_key], "names", None) if label_key is not None else None
    return TfdsSplit(tfds, ds, name, split, resolution, channels, image_key, label_key, names)


@dataclasses.dataclass
class TfdsSplit:
    """A checked TFDS split (`open_tfds`): `examples()` yields (image uint8 [R, R, C], label
    int) in the split's order; `class_names(labels)` names the classes of the labels seen."""
    tfds: Any
    ds: Any
    name: str
    split: str
    resolution: int
    channels: int
    image_key: str
    label_key: Optional[str]
    label_names: Optional[List[str]]

    def examples(self) -> Iterator[Tuple[np.ndarray, int]]:
        """(image, label) of each example; label 0 when label_key is None."""
        for ex in self.tfds.as_numpy(self.ds):
            img = prepare_image(_to_pil(ex[self.image_key], self.image_key), self.resolution, self.channels)
            if self.label_key is None:
                yield img, 0
                continue
            lab = np.asarray(ex[self.label_key])
            if lab.size != 1 or lab.dtype.kind not in "iub":
                raise DatasetError(f"feature {self.label_key!r} of {self.name!r} is not a single "
                                   f"integer class (got {lab.dtype} {lab.shape}): pass "
                                   "label_key=None or a class-label feature.")
            yield img, int(lab.reshape(()))

    def class_names(self, labels: Sequence[int]) -> List[str]:
        """The class names: the ClassLabel's, else the label numbers (DatasetError when a label
        is negative); one class named after the dataset when unlabelled or empty."""
        if self.label_key is None or not len(labels):
            return [self.name.split(":")[0]]
        if min(labels) < 0:
            raise DatasetError(f"negative label {min(labels)} in {self.name!r}/{self.label_key!r}.")
        return list(self.label_names) if self.label_names else [str(i) for i in range(max(labels) + 1)]

    def path(self, i: int) -> str:
        """The name of example i: 'tfds://name/split/i'."""
        return f"tfds://{self.name}/{self.split}/{i}"

    def paths(self, count: int) -> List[str]:
        """The names of the first `count` examples (`path`)."""
        return [self.path(i) for i in range(count)]


def load_tfds(name: str, split: str, resolution: int, channels: int = 3,
              data_dir: Optional[str] = None, image_key: str = "image",
              label_key: Optional[str] = "label",
              max_examples: Optional[int] = None) -> ImageDataset:
    """Read `split` of the prepared TFDS dataset `name` (e.g. 'mnist', 'x:1.0.0').

    label_key=None (or a dataset without labels) gives one class named `name`;
    class names come from a ClassLabel feature, else are the label numbers.
    max_examples: read at most this many examples (in the split's order).
    Returns ImageDataset(images uint8 [N, resolution, resolution, channels], ...).
    """
    src = open_tfds(name, split, resolution, channels, data_dir, image_key, label_key, max_examples)
    pairs = list(src.examples())
    if not pairs:
        raise DatasetError(f"split {split!r} of TFDS dataset {name!r} is empty.")
    labels = [lab for _, lab in pairs]
    class_names = src.class_names(labels)
    return ImageDataset(np.stack([img for img, _ in pairs]), np.asarray(labels, np.int32), class_names,
                        src.paths(len(pairs)))
