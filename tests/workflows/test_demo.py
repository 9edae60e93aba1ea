"""make demo's workflow on micro settings: unconditional GAN, sorter, labelled export, judge, fidelity."""
import json
import logging
import pathlib

import pytest

from jaxgen.errors import OutputError
from jaxgen.utils.outputs import claim_output
from jaxgen.workflows.demo import JUDGE_SEED_OFFSET, run_demo
from sorters import brightness_sorter

XLA_FAST_COMPILE = True

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_demo_judges_the_labelled_export_with_a_classifier_of_other_real_faces(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="jaxgen")
    w = tmp_path / "demo"
    names = ["healthy", "severe"]
    kw = dict(gan=f"{REPO}/configs/acne.py:micro", classifier_overrides=["train.epochs=1", "train.batch_size=4"],
              pool_multiple=8, sorter=brightness_sorter(tmp_path / "sorter", names), classes=names)
    fid = run_demo(str(w), [f"data.path={tmp_path / 'faces'}", "data.cache_dir="], **kw)
    assert list(fid["per_class"]) == names
    rows = [json.loads(x) for x in (w / "synthetic" / "metadata.jsonl").read_text().splitlines()]
    per_class = {n: sum(r["class_name"] == n for r in rows) for n in names}
    assert fid["num_images"] == len(rows) == sum(per_class.values())
    for name, r in fid["per_class"].items():          # every exported face of the class was judged once
        assert sum(r["predicted"].values()) == per_class[name] > 0
        assert r["accuracy"] == r["predicted"][name] / per_class[name]
    assert fid["accuracy"] == pytest.approx(sum(r["accuracy"] for r in fid["per_class"].values()) / 2)
    assert json.loads((w / "fidelity.json").read_text()) == fid
    gan_cfg = json.loads((w / "gan" / "config.json").read_text())
    judge_cfg = json.loads((w / "judge" / "config.json").read_text())
    assert gan_cfg["data"]["conditional"] is False
    assert judge_cfg["data"]["seed"] == gan_cfg["data"]["seed"] + JUDGE_SEED_OFFSET
    assert judge_cfg["data"]["path"] == gan_cfg["data"]["path"] + "_judge"
    assert judge_cfg["data"]["classes"] == names
    assert (w / "samples.png").stat().st_size > 1000 and (w / "synthetic" / "datasheet.md").exists()
    assert any("| **mean** |" in x for x in caplog.messages)
    again = run_demo(str(w), [f"data.path={tmp_path / 'faces'}", "data.cache_dir="], **kw)
    assert again == fid                                # a rerun resumes every step: the same figures


def test_demo_refuses_a_workdir_of_the_old_conditional_demo(tmp_path):
    claim_output(tmp_path / "old", "demo", "--workdir")
    (tmp_path / "old" / "fidelity.json").write_text("{}")
    with pytest.raises(OutputError, match="another jaxgen command"):
        run_demo(str(tmp_path / "old"), [f"data.path={tmp_path / 'faces'}"], gan=f"{REPO}/configs/acne.py:micro")
    assert (tmp_path / "old" / "fidelity.json").read_text() == "{}"
