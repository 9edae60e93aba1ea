"""The hierarchical pipeline end to end on micro settings (16 px demo faces, seconds-long runs)."""
import json
import pathlib

from jaxgen.config import load_config
import pytest

from jaxgen.errors import ConfigError
from jaxgen.workflows.pipeline import STEPS, Configs, check_acceptance, run_pipeline

XLA_FAST_COMPILE = True   # as the trainer tests compile: shares their cached programs (conftest.py)

REPO = pathlib.Path(__file__).resolve().parents[2]
CLASSES = ("healthy", "severe")   # two of the four demo classes: half the per-class runs


def _configs(root: pathlib.Path) -> Configs:
    """configs/acne.py:micro (+ its finetune variant), the tiny classifier for 1 epoch, evolve:micro."""
    gan = load_config(f"{REPO}/configs/acne.py:micro", [f"data.path={root / 'demo'}", "data.cache_dir="])
    gan.data.classes = CLASSES
    # The datasheet's features from the sorter (step 2) rather than a random Inception: one
    # compile less; the Inception fallback's datasheet is tested in tests/metrics.
    gan.metrics.feature_net = f"classifier:{root / 'pipe' / 'cls_real'}"
    # freeze_d=0: the fine-tunes then run the base's compiled step (freeze-D changes the D
    # optimizer's state tree, so it compiles its own; test_train.py covers it at ~40 s).
    ft = load_config(f"{REPO}/configs/acne.py:micro,finetune", ["transfer.freeze_d=0"])
    cls = load_config(f"{REPO}/configs/acne_classifier.py:tiny", ["train.epochs=1", "train.batch_size=2"])
    evo = load_config(f"{REPO}/configs/evolve_acne.py:micro", ["num_per_class=2", "per_round=2",
                                                               "generations=2", "min_diversity=0"])
    evo.require_class = False       # a 1-epoch sorter on 32 images: its votes are noise
    return Configs(gan, ft, cls, evo)


def test_pipeline_micro_runs_every_step_and_resumes(tmp_path, log_lines):
    w = tmp_path / "pipe"
    out = run_pipeline(_configs(tmp_path), str(w), num_sort=8, min_conf=0.0, min_accept=0.0)
    for step in STEPS:
        assert (w / f".{step}.done").is_file(), step
    assert set(out["timing"]) == set(STEPS)
    kept = json.loads((w / ".sort.done").read_text())["kept"]
    assert sorted(kept) == list(CLASSES)
    assert all(0 <= r["kept"] <= 8 and sum(r["predicted"].values()) == 8 for r in kept.values())
    assert json.loads((w / "sorted" / "acceptance.json").read_text()) == kept
    for name in kept:   # real + sorted faces per class, one fine-tuned run per class
        assert len(list((w / "finetune_data" / name).glob("real_*.png"))) == 8
        ft = json.loads((w / "finetune" / name / "run.json").read_text())
        assert ft["class_names"] == list(CLASSES)   # still conditional: the base's label space
        summary = json.loads((w / "finetune" / name / "data_summary.json").read_text())["train"]
        assert summary["fixed_label"] == name
        assert len(list((w / "synthetic" / name).glob("*.png"))) == 2
    report = (w / "eval" / "comparison.md").read_text()
    assert "cls_real" in report and "cls_synthetic" in report
    sheet = json.loads((w / "datasheet" / "datasheet.json").read_text())
    assert sheet["counts"]["synthetic"] == {"healthy": 2, "severe": 2}
    assert sheet["identity"]["embedder"] == "pixel_not_identity" and "not an identity model" in sheet["identity"]["caveat"]
    acc = json.loads((w / ".evaluate.done").read_text())["accuracy"]
    u = sheet["utility"]   # step 7's accuracies, in the datasheet
    assert u["synthetic_train_acc"]["mean"] == acc["cls_synthetic"] and u["real_train_acc"]["mean"] == acc["cls_real"]
    assert u["gap"]["mean"] == pytest.approx(acc["cls_real"] - acc["cls_synthetic"])
    rows = [json.loads(x) for x in (w / "synthetic" / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["identity"]["embedder"] == "pixel_not_identity" and
                                  r["identity"]["nearest_real_distance"] > r["identity"]["threshold"] for r in rows)
    assert 0.0 <= sheet["privacy"]["membership_auc"] <= 1.0
    assert sheet["feature_net"]["name"].startswith("classifier") and not sheet["feature_net"]["comparable_to_papers"]
    assert sheet["meta"]["resolution"] == 16 and sheet["counts"]["train"] == {"healthy": 8, "severe": 8}
    md = (w / "datasheet" / "datasheet.md").read_text()
    assert "not comparable to published values" in md and "**Caveat**" in md and "| severe | 2 | 8 |" in md
    assert "## Utility" in md and f"| synthetic | {acc['cls_synthetic']:.3f} |" in md
    rows = (w / "datasheet" / "images.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[1].split(",")[-1] in ("True", "False")
    assert (w / "datasheet" / "nearest_real.png").stat().st_size > 500
    log_lines.read()
    again = run_pipeline(_configs(tmp_path), str(w), num_sort=8, min_conf=0.0, min_accept=0.0)
    assert again["timing"] == {} and log_lines.read().count("done before, skipped") == len(STEPS)


def test_too_few_sorted_faces_is_an_error_naming_the_class():
    report = {"healthy": dict(kept=30, generated=64, accept=30 / 64),
              "severe": dict(kept=3, generated=64, accept=3 / 64)}
    check_acceptance(report, 0.04)
    with pytest.raises(ConfigError, match=r"severe 3/64; need 10%.*total_kimg") as e:
        check_acceptance(report, 0.1)
    assert "healthy" not in str(e.value)


def test_overrides_reach_each_config_they_name():
    c = Configs.load(f"{REPO}/configs/acne.py:micro", f"{REPO}/configs/acne_classifier.py:tiny",
                     f"{REPO}/configs/evolve_acne.py:micro", ["train.total_kimg=8"], ["train.epochs=2"],
                     ["popsize=4"], ["train.total_kimg=1"])
    assert (c.gan.train.total_kimg, c.finetune.train.total_kimg) == (8, 1)
    assert c.finetune.data.conditional and c.classifier.train.epochs == 2 and c.evolve.popsize == 4
