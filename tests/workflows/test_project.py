"""jaxgen.workflows.project: a projection's files round-trip (projected_w.npz redraws proj.png),
a folder of targets gets one sub-folder each plus summary.json, and a rerun skips what is done.

The tiny generator of tests/tiny_projector.py; 20 steps, one image at a time (batch 1).
"""
import json

import jax
import numpy as np
import pytest
from PIL import Image

from jaxgen.runs import open_run
from jaxgen.stylegan2.projector import ProjectConfig, with_noise
from jaxgen.utils.images import to_uint8
from jaxgen.workflows import project as W
from tiny_projector import shared_tiny

XLA_FAST_COMPILE = True
SHORT = ProjectConfig(steps=20, w_avg_samples=1000, batch=1)


@pytest.fixture(scope="module")
def tiny():
    return shared_tiny()


def test_files_round_trip_and_resume(tiny, tmp_path, log_lines):
    run, img = tiny["run"], to_uint8(tiny["targets"][2])
    Image.fromarray(img).save(tmp_path / "face.png")
    out = tmp_path / "one"
    assert W.project_files(str(tiny["nets"]), str(out), SHORT, target=str(tmp_path / "face.png")) == out
    with np.load(out / W.NPZ) as z:
        assert z["w"].shape == (1, run.model.num_ws, 16) and z["w"].dtype == np.float32
    proj = np.asarray(Image.open(out / "proj.png"))
    again = W.render_projected(open_run(tiny["nets"]), out / W.NPZ)
    assert np.array_equal(to_uint8(again[0]), proj)                      # npz -> synthesize == proj.png
    w, noise = W.load_projected(out / W.NPZ)
    direct = jax.jit(lambda v, w: run.model.apply(v, w, noise_mode="const", method=run.model.synthesize))(
        with_noise(run.variables, noise), w)
    assert np.abs(np.asarray(direct) - again).max() < 1e-4
    assert np.array_equal(np.asarray(Image.open(out / "target.png")), img)
    s = json.loads((out / "losses.json").read_text())
    assert len(s["losses"]["dist"]) == 20 and s["mse"] < s["start_mse"] and s["mse_run_noise"] >= 0
    assert Image.open(out / "progress.png").size == (64 * (len(s["snapshot_steps"]) + 1), 64)
    assert (out / "losses.png").is_file()
    folder = tmp_path / "faces"
    folder.mkdir()
    Image.fromarray(img).save(folder / "a.png")
    Image.fromarray(np.pad(img, [(2, 2), (4, 4), (0, 0)])).convert("RGBA").save(folder / "b.png")  # 16x12
    many = tmp_path / "many"
    W.project_files(str(tiny["nets"]), str(many), SHORT, targets=str(folder))
    assert "b.png: 16x12 -> centre-cropped, resized to 8x8" in log_lines.read()
    assert sorted(json.loads((many / "summary.json").read_text())) == ["a.png", "b.png"]
    assert np.asarray(Image.open(many / "b" / "target.png")).shape == (8, 8, 3)
    stamp = (many / "a" / W.NPZ).stat().st_mtime_ns
    W.project_files(str(tiny["nets"]), str(many), SHORT, targets=str(folder))
    assert "2 of 2 images already projected" in log_lines.read()
    assert (many / "a" / W.NPZ).stat().st_mtime_ns == stamp
