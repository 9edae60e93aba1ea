"""The utility benchmark (synthetic-train / real-test): its statistics, its data plan and checks
(jaxgen.classifiers.utility_arms), and a micro run of the whole code path (5 arms x 2 seeds,
1 epoch, 16 px: the standard three, a 2x synthetic arm and the teacher-label arm with soft targets)."""
import json
import logging
import pathlib
import unittest

import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.classifiers import train as ct
from jaxgen.classifiers import utility as U
from jaxgen.classifiers import utility_arms as A
from jaxgen.config import load_config
from jaxgen.data import load_image_folder
from jaxgen.data.demo_faces import write_demo_dataset
from jaxgen.data.folder import DatasetError
from jaxgen.errors import ConfigError, OutputError
from jaxgen.harness.batches import batch_indices
from jaxgen.metrics import datasheet
from jaxgen.workflows.datasheet import utility_summary

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


def _teacher_probs(path: str):
    """The made-up teacher's probabilities [2] of one synthetic file (not one-hot, class-dependent)."""
    p = 0.6 + 0.3 * (int(pathlib.Path(path).stem.split("_")[-1]) % 2)
    return [p, 1 - p] if pathlib.Path(path).parent.name == "healthy" else [1 - p, p]


def _write_metadata(root: pathlib.Path, skip: int = 0):
    """root/metadata.jsonl as the export writes it (teacher_probs for all but the last `skip` files)."""
    files = sorted(f.relative_to(root).as_posix() for f in root.glob("*/*.png"))
    rows = [dict(file=f, class_name=f.split("/")[0], teacher="runs/cls_real", teacher_probs=_teacher_probs(f))
            for f in files[:len(files) - skip]]
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("utility")
    for name, n, seed in (("real", 6, 0), ("synthetic", 12, 5), ("test", 4, 9), ("few", 3, 7)):
        write_demo_dataset(root / name, n, 16, seed, classes=CLASSES, progress=False)
    _write_metadata(root / "synthetic")
    return root


@pytest.fixture(scope="module")
def micro(folders, tmp_path_factory):
    """One micro benchmark with multiples (1, 2) and the teacher arm: (result, out, args, kw, log lines)."""
    out = tmp_path_factory.mktemp("micro") / "u"
    args = (str(folders / "real"), str(folders / "synthetic"), str(folders / "test"), CONFIG, str(out))
    kw = dict(seeds=2, resolution=16, overrides=["train.epochs=1", "train.batch_size=2"], multiples=(1, 2),
              teacher=True)
    with unittest.TestCase().assertLogs("jaxgen", logging.INFO) as logs:    # caplog is per test
        res = U.run_utility(*args, **kw)
    return res, out, args, kw, [r.getMessage() for r in logs.records]


def test_plan_matches_the_real_counts_per_class_and_refuses_too_few(folders):
    plan = A.plan_data(str(folders / "real"), str(folders / "synthetic"), str(folders / "test"))
    arms = plan["arms"]
    assert {n: len(v) for n, v in arms["synthetic"].items()} == {"healthy": 6, "severe": 6}
    assert all(f.startswith(str(folders / "synthetic" / n)) for n in CLASSES for f in arms["synthetic"][n])
    assert {n: len(v) for n, v in arms["real+synthetic"].items()} == {"healthy": 12, "severe": 12}
    assert plan["test_counts"] == {"healthy": 4, "severe": 4}
    with pytest.raises(DatasetError, match=r"--synthetic .*healthy has 3 images, the real training class 6"):
        A.plan_data(str(folders / "real"), str(folders / "few"), str(folders / "test"))


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


def test_micro_benchmark_writes_its_tables_and_resumes(micro, monkeypatch):
    res, out, args, kw, lines = micro
    assert res["train_images"] == {"real": 12, "synthetic": 12, "synthetic x2": 24, A.TEACHER_ARM: 12,
                                   "real+synthetic": 24}
    assert res["test_images"] == 8
    per_seed = {a: [json.loads((out / "runs" / a / f"seed{s}.test.json").read_text()) for s in (0, 1)]
                for a in A.ARMS}
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
    assert sum(s.startswith("utility: ") and "ETA" in s for s in lines) == 10   # not the trainers' ticks
    u = utility_summary(res, str(out))        # the datasheet's utility section
    assert u["gap"]["mean"] == pytest.approx(np.mean(gaps)) and u["seeds"] == 2 and u["test"] == args[2]
    assert u["real_plus_synthetic_acc"] == res["arms"]["real+synthetic"]["accuracy"]
    syn = res["arms"]["synthetic"]["accuracy"]
    assert f"| synthetic | {syn['mean']:.3f} ± {syn['half_width']:.3f} |" in datasheet._utility_md(u)
    def no_training(*a, **k):
        raise AssertionError("a finished (arm, seed) was trained again")
    monkeypatch.setattr(U, "train_classifier", no_training)
    res2 = U.run_utility(*args, **kw)      # every (arm, seed) done: nothing trains
    assert res2["arms"] == res["arms"]
    with pytest.raises(OutputError, match=r"other settings \(resolution: 16 vs 32\)"):
        U.run_utility(*args, **dict(kw, resolution=32))
    with pytest.raises(OutputError, match=r"other settings \(multiples: \[1, 2\] vs \[1\]; teacher: True vs False\)"):
        U.run_utility(*args, **dict(kw, multiples=(1,), teacher=False))


def test_soft_label_loss_is_cross_entropy_against_probabilities():
    logits = jnp.asarray([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]])
    hard = jnp.asarray([0, 2])
    one_hot = jnp.eye(3)[hard]
    assert float(ct.classification_loss(logits, one_hot)) == pytest.approx(
        float(ct.classification_loss(logits, hard)), abs=1e-6)
    p = np.asarray([[0.2, 0.5, 0.3], [0.6, 0.0, 0.4]])
    z = np.asarray(logits, np.float64)
    log_softmax = z - np.log(np.exp(z).sum(1, keepdims=True))
    assert float(ct.classification_loss(logits, jnp.asarray(p))) == pytest.approx(
        float(np.mean(-(p * log_softmax).sum(1))), abs=1e-6)
    assert ct.hard_labels(jnp.asarray(p)).tolist() == [1, 0] and ct.hard_labels(hard).tolist() == [0, 2]


def test_multiples_and_teacher_labels_refuse_what_cannot_work(folders, tmp_path):
    with pytest.raises(DatasetError, match=r"synthetic/healthy has 12 images, the real training class 6; "
                                           r"--synthetic_multiple 4 .* export at least 24 per class"):
        A.plan_data(str(folders / "real"), str(folders / "synthetic"), str(folders / "test"), multiples=(1, 4))
    write_demo_dataset(tmp_path / "syn", 7, 16, 5, classes=CLASSES, progress=False)
    with pytest.raises(DatasetError, match=r"metadata.jsonl not found.*--label_by <classifier run>"):
        A.plan_data(str(folders / "real"), str(tmp_path / "syn"), str(folders / "test"), teacher=True)
    _write_metadata(tmp_path / "syn", skip=8)       # all severe and one healthy image lack teacher_probs
    with pytest.raises(DatasetError, match=r"no teacher_probs for \d+ of the 12 .*--label_by <classifier run>"):
        A.plan_data(str(folders / "real"), str(tmp_path / "syn"), str(folders / "test"), teacher=True)
    with pytest.raises(ConfigError, match="--synthetic_multiple 0,4"):
        U.parse_multiples("0,4")
    assert U.parse_multiples("16,1,4,4") == (1, 4, 16) and A.arm_dir(A.TEACHER_ARM) == "synthetic_teacher_labels"


def test_multiples_and_the_teacher_arm_train_on_their_images_and_labels(micro, tmp_path):
    res, out, args, kw, _ = micro
    arms = ["real", "synthetic", "synthetic x2", A.TEACHER_ARM]
    assert list(res["arms"]) == arms + ["real+synthetic"] and res["teachers"] == ["runs/cls_real"]
    for arm, per_class in zip(arms, (6, 6, 12, 6)):       # n = 6 real images a class
        assert [len(list((out / "data" / A.arm_dir(arm) / n).glob("*.png"))) for n in CLASSES] == [per_class] * 2
    def sources(arm):      # the synthetic file each link of the arm's folder came from
        return {f"{f.parent.name}/{f.name.split('_', 1)[1]}" for f in (out / "data" / A.arm_dir(arm)).glob("*/*.png")}
    assert sources("synthetic") < sources("synthetic x2") and sources("synthetic") == sources(A.TEACHER_ARM)
    acc = {a: [json.loads((out / "runs" / A.arm_dir(a) / f"seed{s}.test.json").read_text())["accuracy"]
               for s in (0, 1)] for a in arms}
    for a in arms[1:]:
        assert res["gaps"][a]["mean"] == pytest.approx(np.mean(np.subtract(acc["real"], acc[a])))
    assert res["gap"] == res["gaps"]["synthetic"] and res["multiples"] == [1, 2]
    best = [1, 2][int(np.argmax([np.mean(acc["synthetic"]), np.mean(acc["synthetic x2"])]))]
    assert res["best_multiple"] == best and res["best_gap"] == res["gaps"][A.multiple_arm(best)]
    assert res["best_synthetic_train_acc"]["mean"] == pytest.approx(np.mean(acc[A.multiple_arm(best)]))
    md = (out / "utility.md").read_text()
    assert "| synthetic x2 | 24 |" in md and f"| {A.TEACHER_ARM} | 12 |" in md
    assert "Gap, real - synthetic (teacher labels) accuracy" in md and f"Best synthetic multiple: x{best}" in md
    # the teacher arm's classifier trains on the teacher's probabilities, not the folder labels
    data = out / "data" / "synthetic_teacher_labels"
    cfg = U._classifier_config(load_config(CONFIG, kw["overrides"]), data, 0, 16, soft=True)
    exp = ct.ClassifierExperiment(cfg, tmp_path / "probe")
    ds = load_image_folder(data, 16, 3, cache_dir=None)
    want = np.asarray([_teacher_probs(f) for f in ds.paths], np.float32)
    np.testing.assert_allclose(ct.soft_labels(ds, str(data), "metadata.jsonl"), want, rtol=1e-6)
    images, labels = exp.batch(3)
    np.testing.assert_allclose(labels, exp.tr_soft[batch_indices(len(exp.tr_x), 2, 0, 3)])
    assert labels.shape == (2, 2) and images.shape == (2, 16, 16, 3) and len(exp.va_y) == 2
