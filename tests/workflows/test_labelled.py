"""The labelled method end to end on micro settings: staged unconditional GAN with snapshots,
sorter, labelled export at 2x, the curve export, then the utility arms and curve on them."""
import json
import pathlib

import numpy as np
import pytest

from jaxgen.classifiers.utility import run_curve, run_utility
from jaxgen.config import load_config
from jaxgen.errors import ConfigError
from jaxgen.runs import open_run
from jaxgen.workflows.labelled import STEPS, parse_fractions, run_labelled
from sorters import brightness_sorter

XLA_FAST_COMPILE = True   # as the trainer tests compile: shares their cached programs (conftest.py)

REPO = pathlib.Path(__file__).resolve().parents[2]
CLASSES = ("healthy", "severe")


def _configs(root: pathlib.Path):
    gan = load_config(f"{REPO}/configs/acne.py:micro", [f"data.path={root / 'demo'}", "data.cache_dir="])
    gan.data.classes = CLASSES
    cls = load_config(f"{REPO}/configs/acne_classifier.py:tiny", ["train.epochs=2", "train.batch_size=4"])
    return gan, cls


def test_labelled_micro_snapshots_exports_and_curve(tmp_path):
    gan, cls = _configs(tmp_path)
    w = tmp_path / "run"
    sorter = brightness_sorter(tmp_path / "sorter", CLASSES)
    out = run_labelled(gan, cls, str(w), multiple=2, curve=[0.5], pool_multiple=8, sorter=sorter)
    assert json.loads((w / ".sorter.done").read_text())["sorter"] == sorter
    for step in STEPS:
        assert (w / f".{step}.done").is_file(), step
    total = float(gan.train.total_kimg)
    snaps = sorted(p.name for p in (w / "snapshots").iterdir())
    assert snaps == sorted([f"kimg{total / 2:g}", f"kimg{total:g}"])
    half = open_run(str(w / "snapshots" / f"kimg{total / 2:g}"))
    assert half.num_classes == 0 and half.kind == "stylegan2"    # unconditional, as the method trains it
    # the two snapshots are different points of one run: the generator moved between them
    full = open_run(str(w / "snapshots" / f"kimg{total:g}"))
    z = np.random.default_rng(0).standard_normal((2, half.z_dim)).astype(np.float32)
    assert np.abs(half.generate(z) - full.generate(z)).max() > 1e-4
    assert out["per_class"] == {"healthy": 8, "severe": 8}
    acc = json.loads((w / "synthetic" / "acceptance.json").read_text())["per_class"]
    for name in CLASSES:   # 2x the 8 real faces of each class, the sorter's own class
        files = list((w / "synthetic" / name).glob("*.png"))
        assert len(files) == 16 == acc[name]["kept"]
        assert len(list((w / "curve" / f"kimg{total / 2:g}" / name).glob("*.png"))) == 8
    rows = [json.loads(x) for x in (w / "synthetic" / "metadata.jsonl").read_text().splitlines()]
    for r in rows:
        k = list(CLASSES).index(r["class_name"])
        assert int(np.argmax(r["teacher_probs"])) == k and abs(sum(r["teacher_probs"]) - 1) < 1e-5
        assert r["teacher"] == sorter
    sheet = json.loads((w / "synthetic" / "datasheet.json").read_text())
    assert sheet["counts"]["synthetic"] == {"healthy": 16, "severe": 16}
    assert "classifier" in sheet["task_features"]
    # the utility arms on the export (1x, 2x, teacher labels), then the curve over the snapshots
    res = run_utility(str(gan.data.path), out["synthetic"], out["test"], f"{REPO}/configs/acne_classifier.py:tiny",
                      str(w / "utility"), seeds=1, resolution=16, arms=("real", "synthetic"),
                      overrides=["train.epochs=1", "train.batch_size=4"], multiples=(1, 2), teacher=True)
    assert set(res["gaps"]) == {"synthetic", "synthetic x2", "synthetic (teacher labels)"}
    real = [s["accuracy"] for s in res["arms"]["real"]["seeds"]]
    last = {total: [s["accuracy"] for s in res["arms"]["synthetic"]["seeds"]]}
    curve = run_curve(str(gan.data.path), out["curve"], out["test"], f"{REPO}/configs/acne_classifier.py:tiny",
                      str(w / "utility_curve"), real, final=last, seeds=1, resolution=16,
                      overrides=["train.epochs=1", "train.batch_size=4"])
    assert [p["kimg"] for p in curve["points"]] == [total / 2, total]
    assert curve["curve"][f"{total:g}"] == pytest.approx(res["gaps"]["synthetic"]["mean"])
    half_acc = json.loads((w / "utility_curve" / f"kimg{total / 2:g}" / "utility.json").read_text())
    assert curve["curve"][f"{total / 2:g}"] == pytest.approx(real[0] - half_acc["arms"]["synthetic"]["seeds"][0]["accuracy"])
    assert (w / "utility_curve" / "utility_curve.png").stat().st_size > 1000
    again = run_labelled(gan, cls, str(w), multiple=2, curve=[0.5], pool_multiple=8, sorter=sorter)   # resumes: every step skipped
    assert again["timing"] == {}


def test_labelled_refuses_bad_settings_before_output(tmp_path):
    gan, cls = _configs(tmp_path)
    with pytest.raises(ConfigError, match="--curve 1.5"):
        parse_fractions("1.5")
    with pytest.raises(ConfigError, match="--multiple 0"):
        run_labelled(gan, cls, str(tmp_path / "x"), multiple=0)
    gan.data.source = "tfds"
    with pytest.raises(ConfigError, match="image-folder or demo"):
        run_labelled(gan, cls, str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()
