"""One entry point from `config.data` to an in-memory ImageDataset.

  source='folder'  an image folder (class sub-folders) at config.data.path
  source='demo'    the embedded procedural demo faces, rendered into
                   config.data.path on first use (then reused)
  source='tfds'    a TensorFlow Datasets dataset prepared offline
"""
from __future__ import annotations

from typing import Any

from jaxgen.data.folder import DatasetError, ImageDataset, load_image_folder


def load_dataset(data_cfg: Any) -> ImageDataset:
    source = data_cfg.source
    cache = data_cfg.get("cache_dir") or None
    if source == "demo":
        from jaxgen.data.demo_faces import write_demo_dataset
        if not data_cfg.path:
            raise DatasetError("config.data.path must name a directory for the demo dataset")
        write_demo_dataset(data_cfg.path, num_per_class=int(data_cfg.demo_num_per_class),
                           resolution=int(data_cfg.resolution), seed=int(data_cfg.demo_seed))
        return load_image_folder(data_cfg.path, int(data_cfg.resolution), int(data_cfg.channels),
                                 cache_dir=cache)
    if source == "folder":
        if not data_cfg.path:
            raise DatasetError("config.data.path is empty: set --config.data.path=<image folder>")
        return load_image_folder(data_cfg.path, int(data_cfg.resolution), int(data_cfg.channels),
                                 require_labels=bool(data_cfg.conditional),
                                 min_classes=2 if data_cfg.conditional else 1, cache_dir=cache)
    if source == "tfds":
        from jaxgen.data.tfds_source import load_tfds
        return load_tfds(data_cfg.tfds_name, data_cfg.split, int(data_cfg.resolution),
                         int(data_cfg.channels), data_dir=data_cfg.tfds_data_dir or None)
    raise DatasetError(f"config.data.source={source!r}: choose 'folder', 'demo' or 'tfds'")
