"""The utility benchmark (synthetic-train / real-test): its statistics, its data plan and
checks, and a micro run of the whole code path (3 arms x 2 seeds, 1 epoch, 16 px)."""
import json
import pathlib

import numpy as np
import pytest

from jaxgen.classifiers import utility as U
from jaxgen.data.demo_faces import write_demo_dataset
from jaxgen.data.folder import DatasetError
from jaxgen.errors import OutputError
from jaxgen.metrics import datasheet

XLA_FAST_COMPILE = True

CONFIG = str(pathlib.Path(__file__).resolve().parents[2] / "configs" / "acne_classifier.py") + ":tiny"
CLASSES = ("healthy", "severe")


def test_interval_is_the_student_t_interval_of_the_mean():
    d = U.interval([0.5, 0.7, 0.9])
    # mean 0.7, sample std 0.2, t(0.975, 2 dof) = 4.302653 -> half-width 4.302653 * 0.2 / sqrt(3)
    assert d["mean"] == pytest.approx(0.7) and d["std"] == pytest.approx(0.2)
    assert d["half_width"] == pytest.approx(4.302653 * 0.2 / np.sqrt(3), rel=1e-6)
    assert (d["lo"], d["hi"]) == pytest.approx((0.7 - d["half_width"], 0.7 + d["half_width"]))
    one = U.interval([0.8])
    assert one["half_width"] is None and one["lo"] == one["hi"] == 0.8


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("utility")
    for name, n, seed in (("real", 6, 0), ("synthetic", 9, 5), ("test", 4, 9), ("few", 3, 7)):
        write_demo_dataset(root / name, n, 16, seed, classes=CLASSES, progress=False)
    return root


def test_plan_matches_the_real_counts_per_class_and_refuses_too_few(folders):
    plan = U.plan_data(str(folders / "real"), str(folders / "synthetic"), str(folders / "test"))
    arms = plan["arms"]
    assert {n: len(v) for n, v in arms["synthetic"].items()} == {"healthy": 6, "severe": 6}
    assert all(f.startswith(str(folders / "synthetic" / n)) for n in CLASSES for f in arms["synthetic"][n])
    assert {n: len(v) for n, v in arms["real+synthetic"].items()} == {"healthy": 12, "severe": 12}
    assert plan["test_counts"] == {"healthy": 4, "severe": 4}
    with pytest.raises(DatasetError, match=r"--synthetic .*healthy has 3 images, the real training class 6"):
        U.plan_data(str(folders / "real"), str(folders / "few"), str(folders / "test"))


def test_class_mismatch_and_a_foreign_out_folder_stop_before_writing(folders, tmp_path):
    write_demo_dataset(tmp_path / "other", 6, 16, 3, classes=("healthy", "mild"), progress=False)
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match="same class sub-folders"):
        U.run_utility(str(folders / "real"), str(tmp_path / "other"), str(folders / "test"), CONFIG, str(out))
    assert not out.exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(OutputError):
        U.run_utility(str(folders / "real"), str(folders / "synthetic"), str(folders / "test"), CONFIG, str(mine))
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_micro_benchmark_writes_its_tables_and_resumes(folders, tmp_path, monkeypatch):
    out = tmp_path / "u"
    args = (str(folders / "real"), str(folders / "synthetic"), str(folders / "test"), CONFIG, str(out))
    kw = dict(seeds=2, resolution=16, overrides=["train.epochs=1", "train.batch_size=2"])
    lines = []
    res = U.run_utility(*args, **kw, log=lines.append)
    assert res["train_images"] == {"real": 12, "synthetic": 12, "real+synthetic": 24}
    assert res["test_images"] == 8
    per_seed = {a: [json.loads((out / "runs" / a / f"seed{s}.test.json").read_text()) for s in (0, 1)]
                for a in U.ARMS}
    for arm, runs in per_seed.items():
        acc = [r["accuracy"] for r in runs]
        assert res["arms"][arm]["accuracy"]["mean"] == pytest.approx(np.mean(acc))
        assert np.sum(res["arms"][arm]["confusion"]) == 16        # 8 test images x 2 seeds
        assert sum(len(list((out / "data" / arm / n).iterdir())) for n in CLASSES) == res["train_images"][arm]
    gaps = [a["accuracy"] - b["accuracy"] for a, b in zip(per_seed["real"], per_seed["synthetic"])]
    assert res["gap"]["mean"] == pytest.approx(np.mean(gaps))
    assert json.loads((out / "utility.json").read_text())["gap"]["mean"] == pytest.approx(np.mean(gaps))
    md = (out / "utility.md").read_text()
    assert "| real+synthetic | 24 |" in md and "Gap, real - synthetic" in md
    for f in ("samples.png", "confusion_real.png", "confusion_synthetic.png", "confusion_real+synthetic.png"):
        assert (out / f).stat().st_size > 1000, f
    assert sum("ETA" in s for s in lines) == 6
    u = datasheet.utility_summary(res, str(out))        # the datasheet's utility section
    assert u["gap"]["mean"] == pytest.approx(np.mean(gaps)) and u["seeds"] == 2 and u["test"] == args[2]
    assert u["real_plus_synthetic_acc"] == res["arms"]["real+synthetic"]["accuracy"]
    syn = res["arms"]["synthetic"]["accuracy"]
    assert f"| synthetic | {syn['mean']:.3f} ± {syn['half_width']:.3f} |" in datasheet._utility_md(u)
    def no_training(*a, **k):
        raise AssertionError("a finished (arm, seed) was trained again")
    monkeypatch.setattr(U, "train_classifier", no_training)
    res2 = U.run_utility(*args, **kw, log=lambda s: None)      # every (arm, seed) done: nothing trains
    assert res2["arms"] == res["arms"]
    with pytest.raises(OutputError, match=r"other settings \(resolution: 16 vs 32\)"):
        U.run_utility(*args, **dict(kw, resolution=32))
