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

import os
from typing import Optional

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

    images, labels = [], []
    for ex in tfds.as_numpy(ds):
        img = _to_pil(ex[image_key], image_key)
        images.append(prepare_image(img, resolution, channels))
        if label_key is not None:
            lab = np.asarray(ex[label_key])
            if lab.size != 1 or lab.dtype.kind not in "iub":
                raise DatasetError(f"feature {label_key!r} of {name!r} is not a single "
                                   f"integer class (got {lab.dtype} {lab.shape}): pass "
                                   "label_key=None or a class-label feature.")
            labels.append(int(lab.reshape(())))
    if not images:
        raise DatasetError(f"split {split!r} of TFDS dataset {name!r} is empty.")

    if label_key is None:
        class_names, labels = [name.split(":")[0]], [0] * len(images)
    else:
        names = getattr(features[label_key], "names", None)
        if min(labels) < 0:
            raise DatasetError(f"negative label {min(labels)} in {name!r}/{label_key!r}.")
        class_names = list(names) if names else [str(i) for i in range(max(labels) + 1)]
    paths = [f"tfds://{name}/{split}/{i}" for i in range(len(images))]
    return ImageDataset(np.stack(images), np.asarray(labels, np.int32), class_names, paths)
