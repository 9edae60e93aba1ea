"""generate: picks classes by name, shows progress, resumes its own output, refuses the user's folder."""
import json
import pathlib

import numpy as np
import pytest

from jaxgen.errors import ConfigError, OutputError
from jaxgen.workflows import generate


class FakeGenerator:
    """A stand-in for `open_run`'s Run: images from the latent and the label, no network."""

    num_classes, class_names, z_dim = 3, ("healthy", "mild", "severe"), 4

    def __init__(self):
        self.calls = 0

    def generate(self, z, labels, psi=1.0):
        self.calls += 1
        v = np.tanh(np.asarray(z)[:, :1] + np.asarray(labels)[:, None])
        return np.broadcast_to(v[:, :, None, None], (len(z), 8, 8, 3)).reshape(len(z), 8, 8, 3)


@pytest.fixture
def fake_run(monkeypatch):
    g, opened = FakeGenerator(), []

    def open_run(path, which="auto", kinds=()):
        opened.append(path)
        return g
    monkeypatch.setattr(generate, "open_run", open_run)
    return g, opened


def _snapshot(root: pathlib.Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def test_classes_by_name_progress_and_resume(fake_run, tmp_path, capsys):
    g, _ = fake_run
    out = tmp_path / "syn"
    r = generate.export_dataset("runs/x", str(out), num_per_class=5, batch=2, classes=["healthy", "severe"],
                                progress_every=0.0)
    assert r["classes"] == ["healthy", "severe"] and r["written"] == 10 and r["total"] == 10
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == \
        ["healthy", "metadata.jsonl", "severe"]
    rows = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    assert [r["class_index"] for r in rows] == [0] * 5 + [2] * 5          # severe keeps index 2
    assert rows[7]["latent_seed"] == [0, 2, 2] and rows[7]["file"] == "severe/severe_00002.png"
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("generate: images")]
    counts = [ln.split(": ", 2)[2].split()[0] for ln in lines]
    assert counts == ["2/10", "4/10", "5/10", "7/10", "9/10", "10/10"]      # one line per batch
    assert "ETA" in lines[0] and "done in" in lines[-1]
    # Resume and add a class: only the missing images are made; earlier rows stay listed.
    (out / "severe" / "severe_00003.png").unlink()
    r2 = generate.export_dataset("runs/x", str(out), num_per_class=5, classes=["mild", "severe"])
    assert r2["written"] == 6 and r2["total"] == 15
    rows = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    assert [r["class_name"] for r in rows] == ["healthy"] * 5 + ["mild"] * 5 + ["severe"] * 5


def test_cli_picks_classes_and_rejects_unknown_names(fake_run, tmp_path, capsys):
    out = tmp_path / "cli"
    assert generate.main(["--checkpoint", "runs/x", "--out", str(out), "--num_per_class", "2",
                          "--classes", "mild"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["mild"]
    assert "wrote 2 new images; 2 in" in capsys.readouterr().out
    with pytest.raises(ConfigError, match=r"--classes: 'acne' not among the classes of runs/x "
                                          r"\(healthy, mild, severe\)"):
        generate.export_dataset("runs/x", str(tmp_path / "other"), 2, classes=["mild", "acne"])
    assert not (tmp_path / "other").exists()


def test_user_folder_is_refused_before_the_generator_is_opened(fake_run, tmp_path, capsys, monkeypatch):
    g, opened = fake_run
    user = tmp_path / "mine"
    (user / "healthy").mkdir(parents=True)
    (user / "thesis.txt").write_text("mine")
    (user / "metadata.jsonl").write_text('{"mine": true}\n')
    (user / "healthy" / "healthy_00000.png").write_bytes(b"my picture")
    before = _snapshot(user)
    with pytest.raises(OutputError, match="--out"):
        generate.export_dataset("runs/x", str(user), 2)
    monkeypatch.delenv("JAXGEN_DEBUG", raising=False)
    with pytest.raises(SystemExit) as e:   # the command line: one line, exit status 2
        generate.run_main(lambda: generate.main(["--checkpoint", "runs/x", "--out", str(user)]))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --out {user} is not empty")
    assert opened == [] and g.calls == 0 and _snapshot(user) == before
