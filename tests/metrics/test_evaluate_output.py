"""evaluate.py's run: progress while generating and embedding, outputs beside the model, refusals."""
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from jaxgen.errors import OutputError
from jaxgen.metrics import evaluate, suite

CLASSES = ("healthy", "mild", "severe")


class FakeGenerator:
    """A stand-in for `open_run`'s Run: 8 px RGB images from the latent, no network."""

    num_classes, class_names, z_dim, resolution, channels = 3, CLASSES, 4, 8, 3

    def generate(self, z, labels, psi=1.0):
        v = np.tanh(np.asarray(z)[:, :3])
        return np.broadcast_to(v[:, None, None, :], (len(z), 8, 8, 3))


def tiny_net() -> suite.FeatureNet:
    """Random-projection features: cheap, deterministic (FID/KID need only some features)."""
    w = np.random.default_rng(0).standard_normal((8 * 8 * 3, 6)).astype(np.float32) * 0.05

    def fn(images):
        f = np.tanh(np.asarray(images, np.float32).reshape(len(images), -1) / 127.5 - 1.0) @ w
        return {"pool3": f, "logits": f[:, :3]}
    return suite.FeatureNet("tiny_test", False, fn)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    real = tmp_path / "real"
    rng = np.random.default_rng(1)
    for c in CLASSES:
        (real / c).mkdir(parents=True)
        for i in range(30):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(real / c / f"{i}.png")
    opened = []
    monkeypatch.setattr(evaluate, "open_run", lambda path, *a, **k: opened.append(path) or FakeGenerator())
    monkeypatch.setattr(evaluate.suite, "make_feature_net", lambda *a, **k: tiny_net())
    run_dir = tmp_path / "runs" / "acne_tiny"
    run_dir.mkdir(parents=True)
    return dict(real=real, run=run_dir, opened=opened)


def test_progress_lines_count_fakes_and_features(setup, log_lines):
    res = evaluate.run(checkpoint=str(setup["run"]), real=str(setup["real"]), metrics=["fid", "kid"],
                       num_fakes=70, feature_net="x", cache_dir=None, progress_every=0.0)
    assert res["num_fakes"] == 70 and np.isfinite(res["fid_tiny_test"])
    out = log_lines.read().splitlines()

    def counts(label):
        return [ln.split(": ")[2].split()[0] for ln in out if ln.startswith(f"evaluate: {label}:")]
    assert counts("generating fakes") == ["32/70", "64/70", "70/70"]      # batches of 32
    assert counts("features of fakes") == ["64/70", "70/70"]              # batches of 64
    assert counts("features of reals") == ["64/90", "90/90"]
    # No --out: the results lie beside the run, never inside it.
    beside = setup["run"].parent / "acne_tiny_eval"
    assert json.loads((beside / "metrics.json").read_text())["num_fakes"] == 70
    assert sorted(p.name for p in setup["run"].iterdir()) == []


def test_a_user_folder_as_out_is_refused_before_loading(setup, tmp_path):
    user = tmp_path / "notes"
    user.mkdir()
    (user / "metrics.md").write_text("my own notes")
    with pytest.raises(OutputError, match=f"--out {user} is not empty"):
        evaluate.run(checkpoint=str(setup["run"]), real=str(setup["real"]), out=str(user))
    assert setup["opened"] == [] and [p.name for p in user.iterdir()] == ["metrics.md"]
    assert (user / "metrics.md").read_text() == "my own notes"
    assert evaluate.default_out(fakes="out/synthetic") == pathlib.Path("out/synthetic_eval")
