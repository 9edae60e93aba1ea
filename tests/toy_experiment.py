"""The toy experiment of the harness tests (tests/harness): least squares of a label on the
pixels of [N, 4, 4, 1] uint8 images, a state that compiles in moments.

Each test module subclasses `ToyExperiment` with its own data size, optimizer, schedule and
hooks; `no_tensorboard` is the fixture they import (metrics.jsonl only: TensorBoard's clu
imports TensorFlow, which alone takes longer than these tests).
"""
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgen.harness import logs
from jaxgen.harness.experiment import Experiment

RES = 4


@pytest.fixture(autouse=True)
def no_tensorboard(monkeypatch):
    """Imported by the harness test modules: their runs write metrics.jsonl without TensorBoard."""
    monkeypatch.setattr(logs, "open_tensorboard", lambda workdir: None)


@flax.struct.dataclass
class ToyState:
    step: jnp.ndarray
    w: jnp.ndarray
    opt: Any


class ToyExperiment(Experiment):
    """w [16 + extra] fit by `self.tx` to labels [B] from images [B, 4, 4, 1] (uint8 / 255);
    `noise`: the loss gets 1e-3 * N(0, 1) from fold_in(key, step), so a resumed run that drew
    other keys would differ. Subclasses' constructors set `tx` and the fields `Experiment`
    requires (descriptor, schedule, seed, num_examples), and define `batch` or `local_batch`."""

    kind = "classifier"
    noise = False
    extra = 0        # weights beyond the 16 the loss uses (a state of another shape)
    tx: optax.GradientTransformation
    images: np.ndarray    # uint8 [N, 4, 4, 1] (`toy_data`)
    labels: np.ndarray    # int32 [N]

    def toy_data(self, n: int, num_classes: int) -> None:
        """images uint8 [n, 4, 4, 1] and labels int32 [n] in [0, num_classes), seeded."""
        rng = np.random.default_rng(0)
        self.images = rng.integers(0, 256, [n, RES, RES, 1]).astype(np.uint8)
        self.labels = rng.integers(0, num_classes, n).astype(np.int32)

    def init_state(self, key):
        w = jax.random.normal(key, [RES * RES + self.extra]) * 0.01
        return ToyState(step=jnp.zeros((), jnp.int32), w=w, opt=self.tx.init(w))

    def train_step(self, state, images, labels, key):
        x = images.reshape(images.shape[0], -1).astype(jnp.float32) / 255.0
        noise = jax.random.normal(jax.random.fold_in(key, state.step), []) if self.noise else 0.0

        def loss_fn(w):
            return jnp.mean((x @ w[:RES * RES] - labels) ** 2) + 1e-3 * noise

        loss, g = jax.value_and_grad(loss_fn)(state.w)
        upd, opt = self.tx.update(g, state.opt, state.w)
        return state.replace(step=state.step + 1, w=optax.apply_updates(state.w, upd), opt=opt), {"loss": loss}
