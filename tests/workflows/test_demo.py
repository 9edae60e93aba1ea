"""make demo's workflow on micro settings: GAN, classifier on the same real faces, class fidelity."""
import json
import pathlib

from jaxgen.workflows.demo import run_demo

XLA_FAST_COMPILE = True

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_demo_reports_per_class_fidelity_of_the_generated_faces(tmp_path):
    lines = []
    fid = run_demo(str(tmp_path / "demo"), [f"data.path={tmp_path / 'faces'}", "data.cache_dir="],
                   log=lines.append, gan=f"{REPO}/configs/acne.py:micro",
                   classifier_overrides=["train.epochs=1", "train.batch_size=4"], num_per_class=8)
    assert list(fid["per_class"]) == ["healthy", "mild", "moderate", "severe"]
    for name, r in fid["per_class"].items():
        assert sum(r["predicted"].values()) == 8 and r["accuracy"] == r["predicted"][name] / 8
    assert fid["accuracy"] == sum(r["accuracy"] for r in fid["per_class"].values()) / 4
    assert json.loads((tmp_path / "demo" / "fidelity.json").read_text()) == fid
    cls = json.loads((tmp_path / "demo" / "classifier" / "run.json").read_text())
    assert cls["resolution"] == 16 and cls["class_names"] == list(fid["per_class"])
    assert (tmp_path / "demo" / "samples.png").stat().st_size > 1000
    assert "| **mean** |" in lines[0]
