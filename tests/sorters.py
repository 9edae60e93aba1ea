"""A hand-set classifier run for workflow tests: its votes split any generator's samples."""
import pathlib
from typing import Sequence

import jax
import numpy as np

from jaxgen.classifiers.models import build_classifier
from jaxgen.harness.checkpoint import TrainCheckpointer, write_descriptor


def brightness_sorter(path: pathlib.Path, classes: Sequence[str], resolution: int = 16) -> str:
    """A real classifier run (small_cnn, one 1x1-like conv) over two classes that calls a face
    classes[0] when its mean pixel is above 0 and classes[1] below, with logits +-8 x the mean:
    a sorter whose votes split any generator's samples, which a 1-2 epoch sorter on 16 faces
    does not. Returns the run's path."""
    model = build_classifier("small_cnn", 2, width=2, stages=1, convs_per_stage=1)
    v = model.init(jax.random.key(0), np.zeros([1, resolution, resolution, 3]), train=False)
    kernel = np.zeros([3, 3, 3, 2], np.float32)
    kernel[1, 1, :, 0], kernel[1, 1, :, 1] = 1 / 3, -1 / 3          # relu(mean), relu(-mean)
    params = dict(v["params"], stage1_conv1=dict(conv=dict(kernel=kernel), bn=dict(
        scale=np.ones(2, np.float32), bias=np.zeros(2, np.float32))), predictions=dict(
        kernel=np.array([[8, -8], [-8, 8]], np.float32), bias=np.zeros(2, np.float32)))
    stats = dict(stage1_conv1=dict(bn=dict(mean=np.zeros(2, np.float32), var=np.full(2, 0.999, np.float32))))
    ck = TrainCheckpointer(path, subdir="best")
    ck.save(1, dict(step=np.int32(1), params=params, batch_stats=stats), dict(tick=1))
    ck.close()
    write_descriptor(path, "classifier", class_names=list(classes), resolution=resolution, channels=3,
                     model="small_cnn", model_kwargs=dict(width=2, stages=1, convs_per_stage=1))
    return str(path)
