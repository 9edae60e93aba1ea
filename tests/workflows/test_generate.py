"""generate: checks every image against the real faces, refuses near-copies, picks classes by name,
shows progress, resumes its own output, refuses the user's folder."""
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from jaxgen.errors import ConfigError, OutputError
from jaxgen.metrics.suite import FeatureNet
from jaxgen.workflows import generate

NAMES = ("healthy", "mild", "severe")
RES, Z = 16, 16


def _pattern(z, labels):
    """Textured [N, RES, RES, 3] images in [-1, 1] from the latent and the label."""
    z = np.asarray(z)
    yy, xx = np.meshgrid(np.arange(RES), np.arange(RES), indexing="ij")
    waves = [np.cos(0.37 * (k % 8 + 1) * xx + 0.29 * (k // 2) * yy + c) for k in range(Z) for c in range(3)]
    basis = np.stack(waves).reshape(Z, 3, RES, RES).transpose(0, 2, 3, 1)     # [Z, H, W, 3]
    return np.tanh(0.5 * np.einsum("nk,khwc->nhwc", z, basis) + 0.2 * np.asarray(labels)[:, None, None, None])


def _real(root: pathlib.Path, n: int = 4, seed: int = 1) -> pathlib.Path:
    """A real-face folder: n random textured images per class."""
    rng = np.random.default_rng(seed)
    for k, name in enumerate(NAMES):
        (root / name).mkdir(parents=True)
        imgs = _pattern(rng.standard_normal((n, Z)), np.full(n, k))
        for i, im in enumerate(imgs):
            Image.fromarray(np.round((im + 1) * 127.5).astype(np.uint8)).save(root / name / f"r{i}.png")
    return root


class FakeGenerator:
    """A stand-in for `open_run`'s Run: images from the latent and the label, no network.

    copy_above: a latent whose first entry is above it returns a training face of its class
    (+ 1 grey level of noise) instead: a generator that memorises."""

    num_classes, class_names, z_dim, resolution, channels, path = 3, NAMES, Z, RES, 3, "runs/x"

    def __init__(self, real: pathlib.Path, copy_above: float = np.inf):
        self.calls, self.copy_above = 0, copy_above
        self.copies = {n: [np.asarray(Image.open(p), np.float32) / 127.5 - 1
                           for p in sorted((real / n).glob("*.png"))] for n in NAMES}

    def generate(self, z, labels, psi=1.0):
        self.calls += 1
        out = _pattern(z, labels)
        for k in np.flatnonzero(np.asarray(z)[:, 0] > self.copy_above):
            faces = self.copies[NAMES[labels[k]]]
            out[k] = faces[int(abs(z[k, 1]) * 100) % len(faces)] + 0.008 * np.sign(z[k, 2])
        return out


@pytest.fixture
def real(tmp_path):
    return str(_real(tmp_path / "real"))


@pytest.fixture
def fake_run(monkeypatch, real):
    g, opened = FakeGenerator(pathlib.Path(real)), []

    def open_run(path, which="auto", kinds=()):
        opened.append(path)
        return g
    monkeypatch.setattr(generate, "open_run", open_run)
    return g, opened


def _snapshot(root: pathlib.Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def _rows(out):
    return [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]


def test_classes_by_name_progress_and_resume(fake_run, real, tmp_path, capsys):
    out = tmp_path / "syn"
    r = generate.export_dataset("runs/x", str(out), num_per_class=5, batch=2, classes=["healthy", "severe"],
                                progress_every=0.0, real=real, datasheet=False, identity="pixel")
    assert r["classes"] == ["healthy", "severe"] and r["written"] == 10 and r["total"] == 10
    assert r["refused"] == {"healthy": 0, "severe": 0}
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == \
        ["healthy", "metadata.jsonl", "severe"]
    rows = _rows(out)
    assert [r["class_index"] for r in rows] == [0] * 5 + [2] * 5          # severe keeps index 2
    assert rows[7]["latent_seed"] == [0, 2, 2] and rows[7]["file"] == "severe/severe_00002.png"
    ident = rows[7]["identity"]   # per image: nearest real face, distance, threshold, model
    assert ident["embedder"] == "pixel_not_identity" and not ident["is_identity_model"]
    assert ident["threshold"] == 0.3 and ident["passed"] and ident["nearest_real_distance"] > 0.3
    assert ident["nearest_real_file"].startswith(real)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("generate: images")]
    counts = [ln.split(": ", 2)[2].split()[0] for ln in lines]
    assert counts == ["2/10", "4/10", "5/10", "7/10", "9/10", "10/10"]      # one line per batch
    assert "ETA" in lines[0] and "done in" in lines[-1]
    # Resume and add a class: only the missing images are made; earlier rows stay listed.
    (out / "severe" / "severe_00003.png").unlink()
    r2 = generate.export_dataset("runs/x", str(out), num_per_class=5, classes=["mild", "severe"],
                                 real=real, datasheet=False, identity="pixel")
    assert r2["written"] == 6 and r2["total"] == 15
    assert [r["class_name"] for r in _rows(out)] == ["healthy"] * 5 + ["mild"] * 5 + ["severe"] * 5


def test_planted_near_copies_are_refused_and_recorded(fake_run, real, tmp_path, capsys):
    g, _ = fake_run
    g.copy_above = 0.3        # about 2 in 5 candidates are a training face + 1 grey level
    out = tmp_path / "syn"
    r = generate.export_dataset("runs/x", str(out), num_per_class=6, batch=4, real=real, datasheet=False,
                                identity="pixel")
    z0 = {n: [np.random.default_rng([0, k, i]).standard_normal(Z)[0] for i in range(40)]
          for k, n in enumerate(NAMES)}
    for k, name in enumerate(NAMES):
        files = sorted(p.name for p in (out / name).iterdir())
        idx = [int(f[len(name) + 1:-4]) for f in files]
        tried = (idx[-1] // 4 + 1) * 4                  # whole batches of 4 candidates
        copies = [i for i in range(tried) if z0[name][i] > 0.3]
        assert len(files) == 6 and copies and not set(copies) & set(idx)   # no copy is written ...
        assert r["refused"][name] == len(copies)                            # ... each one is counted
    rows = _rows(out)
    d = np.array([row["identity"]["nearest_real_distance"] for row in rows])
    assert d.min() > 0.3 and all(row["identity"]["passed"] for row in rows)
    # A generator that only copies: the export stops with one error and writes no image.
    g.copy_above = -np.inf
    with pytest.raises(ConfigError, match=r"healthy: only 0 of 8 candidates passed .*reproduces its training"):
        generate.export_dataset("runs/x", str(tmp_path / "copies"), num_per_class=2, real=real,
                                datasheet=False, identity="pixel")
    assert not list((tmp_path / "copies").rglob("*.png"))


def _pixel_net(inception_weights, fallback):
    """A cheap stand-in feature net (the datasheet's own numbers are tested in tests/metrics)."""
    assert (inception_weights, fallback) == ("", "random_inception")
    return FeatureNet("pixels_for_test", False, lambda x: {"pool3": x.reshape(len(x), -1)[:, ::7] / 255.0})


def test_datasheet_beside_the_export(fake_run, real, tmp_path, monkeypatch):
    monkeypatch.setattr(generate, "make_feature_net", _pixel_net)
    hold = str(_real(tmp_path / "hold", seed=2))
    out = tmp_path / "syn"
    r = generate.export_dataset("runs/x", str(out), num_per_class=4, real=real, holdout=hold, identity="pixel")
    sheet = json.loads((out / "datasheet.json").read_text())
    assert sheet["feature_net"] == dict(name="pixels_for_test", comparable_to_papers=False)
    assert sheet["counts"]["synthetic"] == {n: 4 for n in NAMES} and sheet["counts"]["holdout"]["mild"] == 4
    assert sheet["identity"]["matches"] == 0 and sheet["meta"]["refused_near_copies"] == {n: 0 for n in NAMES}
    assert r["datasheet"]["privacy"]["membership_auc"] == sheet["privacy"]["membership_auc"]
    assert all((out / f).stat().st_size > 0 for f in ("datasheet.md", "nearest_real.png", "images.csv"))
    assert len((out / "images.csv").read_text().splitlines()) == 1 + 12


def test_cli_checks_its_inputs_before_writing(fake_run, real, tmp_path, capsys):
    g, _ = fake_run
    out = tmp_path / "cli"
    assert generate.main(["--checkpoint", "runs/x", "--out", str(out), "--num_per_class", "2",
                          "--classes", "mild", "--real", real, "--no_datasheet", "--identity", "pixel"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["mild"]
    assert "wrote 2 new images; 2 in" in capsys.readouterr().out
    other = tmp_path / "other"
    with pytest.raises(ConfigError, match=r"--classes: 'acne' not among the classes of runs/x "
                                          r"\(healthy, mild, severe\)"):
        generate.export_dataset("runs/x", str(other), 2, classes=["mild", "acne"], real=real)
    with pytest.raises(ConfigError, match="--real: runs/x does not say which faces"):
        generate.export_dataset("runs/x", str(other), 2)     # no config.json, no --real: no export
    with pytest.raises(ConfigError, match="--holdout: give held-out real faces"):
        generate.export_dataset("runs/x", str(other), 2, real=real)
    with pytest.raises(ConfigError, match=r"--real .* has no class 'healthy', 'severe'"):
        generate.export_dataset("runs/x", str(other), 2, real=str(pathlib.Path(real) / "mild"),
                                datasheet=False)
    assert not other.exists()


def test_user_folder_is_refused_before_the_generator_is_opened(fake_run, real, tmp_path, capsys, monkeypatch):
    g, opened = fake_run
    user = tmp_path / "mine"
    (user / "healthy").mkdir(parents=True)
    (user / "thesis.txt").write_text("mine")
    (user / "metadata.jsonl").write_text('{"mine": true}\n')
    (user / "healthy" / "healthy_00000.png").write_bytes(b"my picture")
    before = _snapshot(user)
    with pytest.raises(OutputError, match="--out"):
        generate.export_dataset("runs/x", str(user), 2, real=real)
    monkeypatch.delenv("JAXGEN_DEBUG", raising=False)
    with pytest.raises(SystemExit) as e:   # the command line: one line, exit status 2
        generate.run_main(lambda: generate.main(["--checkpoint", "runs/x", "--out", str(user)]))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --out {user} is not empty")
    assert opened == [] and g.calls == 0 and _snapshot(user) == before
