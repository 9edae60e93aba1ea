"""evaluate.py and FID tracking during training (fallback features: no Inception file here)."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

import tiny_gan
from jaxgen.errors import OutputError
from jaxgen.metrics import suite
from jaxgen.metrics.evaluate import run
from jaxgen.metrics.fid_tracker import FIDTracker
from jaxgen.workflows import generate

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, jax_cache_dir):
    root = tmp_path_factory.mktemp("fidrun")
    env = tiny_gan.fast_compile_env(dict(os.environ, JAXGEN_JAX_CACHE=str(jax_cache_dir),
                                         JAXGEN_CACHE_DIR=str(root / "imgcache")))
    out = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs/acne.py") + ":micro",
         "--workdir", str(root / "run"), f"--config.data.path={root / 'demo'}",
         "--config.metrics.every_ticks=2", "--config.metrics.num_fakes=16",
         "--config.metrics.feature_net=random_inception", f"--config.metrics.cache_dir={root / 'mc'}"],
        env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(workdir=root / "run", data=root / "demo", stdout=out.stdout, root=root)


def test_training_tracks_fid_plots_it_and_keeps_the_best(trained):
    w = trained["workdir"]
    rows = [json.loads(ln) for ln in (w / "fid.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [4, 8]            # ticks 2 and 4 of 2 steps each
    vals = [r["fid_random_inception_s0"] for r in rows]
    assert all(np.isfinite(vals)) and all(v > 0 for v in vals)
    assert (w / "fid.png").stat().st_size > 1000
    best = sorted(int(p.name) for p in (w / "best").iterdir() if p.name.isdigit())
    assert best == [rows[int(np.argmin(vals))]["step"]]
    assert "fid_random_inception_s0" in trained["stdout"]
    ticks = [json.loads(ln) for ln in (w / "metrics.jsonl").read_text().splitlines()]
    assert sum("metrics/fid_random_inception_s0" in t for t in ticks) == 2


def test_evaluate_checkpoint_writes_json_and_markdown(trained, tmp_path):
    res = run(checkpoint=str(trained["workdir"]), real=str(trained["data"]), num_fakes=24,
              feature_net="random_inception", out=str(tmp_path / "eval"), cache_dir=str(tmp_path / "c"))
    for key in ("fid_random_inception_s0", "kid_random_inception_s0", "is_random_inception_s0",
                "precision_random_inception_s0", "recall_random_inception_s0", "ssim_nn", "psnr_nn"):
        assert np.isfinite(res[key]), key
    assert res["comparable_to_published"] is False and res["num_fakes"] == 24
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["fid_random_inception_s0"] == pytest.approx(res["fid_random_inception_s0"])
    md = (tmp_path / "eval" / "metrics.md").read_text()
    assert "| FID [random_inception_s0] |" in md and "NOT comparable" in md
    # The best-FID checkpoint is also evaluable.
    res_best = run(checkpoint=str(trained["workdir"]), best=True, real=str(trained["data"]), num_fakes=8,
                   metrics=["ssim"], out=str(tmp_path / "eval_best"))
    assert 0 < res_best["ssim_nn"] < 1


def test_evaluate_folder_of_real_copies_scores_perfectly(trained, tmp_path):
    fakes = tmp_path / "fakes"
    shutil.copytree(trained["data"], fakes, ignore=shutil.ignore_patterns("*.json", "preview.png"))
    res = run(fakes=str(fakes), real=str(trained["data"]), metrics=["fid", "pr", "ssim"],
              feature_net="random_inception", out=str(tmp_path / "e"), cache_dir=None)
    assert abs(res["fid_random_inception_s0"]) < 1e-3
    assert res["precision_random_inception_s0"] == 1.0 and res["recall_random_inception_s0"] == 1.0
    assert res["ssim_nn"] == pytest.approx(1.0)


def test_missing_inception_weights_say_where_to_get_them():
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05-6726825d.pth"):
        suite.make_feature_net("", "")
    with pytest.raises(FileNotFoundError, match="github.com/mseitzer/pytorch-fid"):
        suite.make_feature_net("/nonexistent/pt_inception.pth", "")
    cfg = ml_collections.ConfigDict(dict(every_ticks=5, num_fakes=10, inception_weights="", feature_net="",
                                         cache_dir=""))
    with pytest.raises(ValueError, match="feature_net=random_inception"):
        FIDTracker(cfg, None, np.zeros([1, 8, 8, 3], np.uint8), pathlib.Path("."), None)


def test_random_inception_features_are_seeded_and_sensitive():
    net0, net0b, net1 = (suite.make_feature_net("", f"random_inception:{s}") for s in (0, 0, 1))
    x = np.random.default_rng(0).integers(0, 256, [4, 16, 16, 3]).astype(np.uint8)
    a, b, c = net0.fn(x)["pool3"], net0b.fn(x)["pool3"], net1.fn(x)["pool3"]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert net0.name == "random_inception_s0" and not net0.comparable
    assert 0.01 < float(a.std()) < 100  # He-normal init keeps activations in a sane range


def _pixel_net(inception_weights, fallback):
    """Pixels as features: the datasheet's plumbing on a real run without compiling an Inception
    (the random-Inception features themselves are tested above)."""
    assert (inception_weights, fallback) == ("", "random_inception")
    return suite.FeatureNet("pixels_for_test", False, lambda x: {"pool3": x.reshape(len(x), -1)[:, ::5] / 255.0})


def test_generate_exports_checked_resumable_dataset_with_datasheet(trained, tmp_path, monkeypatch):
    out = tmp_path / "synthetic"
    monkeypatch.setattr(generate, "make_feature_net", _pixel_net)
    # The run's config.json names its demo faces: the check, its pixel model and the holdout follow.
    r = generate.export_dataset(str(trained["workdir"]), str(out), num_per_class=3)
    assert r["written"] == 12 and r["classes"] == ["healthy", "mild", "moderate", "severe"]
    rows = [json.loads(ln) for ln in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and rows[4]["class_name"] == "mild" and rows[4]["latent_seed"] == [0, 1, 1]
    assert all(r["identity"]["embedder"] == "pixel_not_identity" and r["identity"]["passed"] for r in rows)
    assert rows[0]["identity"]["nearest_real_file"].startswith(str(trained["root"] / "demo"))
    sheet = json.loads((out / "datasheet.json").read_text())
    assert sheet["counts"]["synthetic"]["mild"] == 3 and sheet["counts"]["holdout"]["mild"] >= 1
    assert sheet["feature_net"]["name"] == "pixels_for_test" and 0 <= sheet["privacy"]["membership_auc"] <= 1
    assert "not an identity model" in sheet["identity"]["caveat"]
    first = (out / "mild" / "mild_00001.png").read_bytes()
    (out / "mild" / "mild_00001.png").unlink()
    (out / "severe" / "severe_00002.png").write_bytes(b"truncated")
    r2 = generate.export_dataset(str(trained["workdir"]), str(out), num_per_class=3, datasheet=False)
    assert r2["written"] == 2                                   # only the missing and the broken one
    assert (out / "mild" / "mild_00001.png").read_bytes() == first   # same latent -> same image
    with pytest.raises(OutputError, match=r"other settings \(class_names: \[\] -> \['../evil'"):
        generate.export_dataset(str(trained["workdir"]), str(out), 1, class_names=["../evil", "b", "c", "d"])
    with pytest.raises(ValueError, match=r"has no class '../evil'"):     # a new folder: the name check
        generate.export_dataset(str(trained["workdir"]), str(tmp_path / "evil"), 1,
                                class_names=["../evil", "b", "c", "d"])
    assert not (tmp_path / "evil").exists()
