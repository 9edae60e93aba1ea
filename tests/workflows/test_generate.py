"""generate: checks every image against the real faces, refuses near-copies, picks classes by name,
shows progress, resumes its own output, refuses the user's folder and a changed rerun; --label_by
labels an unconditional generator's candidates with a classifier run (top / threshold rules)."""
import json
import pathlib

import jax
import numpy as np
import pytest
from PIL import Image

from jaxgen.classifiers.models import build_classifier
from jaxgen.commands import generate as generate_command
from jaxgen.commands.common import run_main
from jaxgen.errors import ConfigError, OutputError
from jaxgen.harness.checkpoint import TrainCheckpointer, write_descriptor
from jaxgen.metrics.suite import FeatureNet
from jaxgen.runs import open_run as real_open_run
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


def test_classes_by_name_progress_and_resume(fake_run, real, tmp_path, log_lines):
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
    lines = [ln for ln in log_lines.read().splitlines() if ln.startswith("generate: images")]
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
    assert generate_command.main(["--checkpoint", "runs/x", "--out", str(out), "--num_per_class", "2",
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
        run_main(lambda: generate_command.main(["--checkpoint", "runs/x", "--out", str(user)]))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --out {user} is not empty")
    assert opened == [] and g.calls == 0 and _snapshot(user) == before


# ---- --label_by: an unconditional generator labelled by a (real, hand-set) classifier run ----

A, T = 10.0, 6.0        # the classifier's slope and its 'mild' bonus: mild <=> |brightness| < T / (2 A)


class FakeUnconditional:
    """An unconditional stand-in: brightness 0.75 tanh(z_0) (the class a brightness classifier sees)
    plus a faint texture; a latent with z_1 > copy_above returns a training face at that brightness
    (lower contrast: a near-copy to the pixel check, which ignores brightness and contrast)."""

    num_classes, class_names, z_dim, resolution, channels, path = 0, (), Z, RES, 3, "runs/u"

    def __init__(self, real: pathlib.Path, copy_above: float = 1.2):
        self.copy_above, self.calls = copy_above, 0
        self.faces = [np.asarray(Image.open(p), np.float32) / 127.5 - 1 for p in sorted(real.rglob("*.png"))]

    def generate(self, z, labels=None, psi=1.0):
        self.calls += 1
        z = np.asarray(z)
        bright = 0.75 * np.tanh(z[:, :1, None, None])
        out = bright + 0.05 * _pattern(z, np.zeros(len(z)))
        for k in np.flatnonzero(z[:, 1] > self.copy_above):
            out[k] = bright[k] + 0.2 * self.faces[int(abs(z[k, 2]) * 100) % len(self.faces)]
        return np.clip(out, -1, 1)


def _np_probs(images_uint8):
    """The hand-set classifier in numpy: softmax of A*(f1-f0), T-A*(f0+f1), A*(f0-f1), where
    f0, f1 are the mean of relu(+-m) over pixels of the channel-mean m in [-1, 1]."""
    m = (np.asarray(images_uint8, np.float64) / 127.5 - 1).mean(-1)
    f0, f1 = np.maximum(m, 0).mean((1, 2)), np.maximum(-m, 0).mean((1, 2))
    logits = np.stack([A * (f1 - f0), T - A * (f0 + f1), A * (f0 - f1)], -1)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def brightness_classifier(tmp_path_factory):
    """A real classifier run (small_cnn, 1 conv of 2 channels) whose weights compute `_np_probs`."""
    model = build_classifier("small_cnn", 3, width=2, stages=1, convs_per_stage=1)
    v = model.init(jax.random.key(0), np.zeros([1, RES, RES, 3]), train=False)
    kernel = np.zeros([3, 3, 3, 2], np.float32)
    kernel[1, 1, :, 0], kernel[1, 1, :, 1] = 1 / 3, -1 / 3          # channel mean, and its negative
    params = dict(v["params"], stage1_conv1=dict(conv=dict(kernel=kernel), bn=dict(
        scale=np.ones(2, np.float32), bias=np.zeros(2, np.float32))), predictions=dict(
        kernel=np.array([[-A, -A, A], [A, -A, -A]], np.float32), bias=np.array([0, T, 0], np.float32)))
    stats = dict(stage1_conv1=dict(bn=dict(mean=np.zeros(2, np.float32), var=np.full(2, 0.999, np.float32))))
    same = jax.tree_util.tree_map(lambda a, b: a.shape == b.shape, (params, stats),
                                  (v["params"], v["batch_stats"]))
    assert all(jax.tree_util.tree_leaves(same))          # the hand-set weights fill the model exactly
    cd = tmp_path_factory.mktemp("clf") / "bright"
    ck = TrainCheckpointer(cd, subdir="best")
    ck.save(1, dict(step=np.int32(1), params=params, batch_stats=stats), dict(tick=1))
    ck.close()
    write_descriptor(cd, "classifier", class_names=NAMES, resolution=RES, channels=3, model="small_cnn",
                     model_kwargs=dict(width=2, stages=1, convs_per_stage=1))
    return str(cd)


@pytest.fixture
def uncond_run(monkeypatch, real):
    """generate.open_run: the fake unconditional generator for 'runs/u', the fake conditional one for
    'runs/x', real classifier runs."""
    gens = dict(u=FakeUnconditional(pathlib.Path(real)), x=FakeGenerator(pathlib.Path(real)))

    def open_run(path, which="auto", kinds=()):
        return real_open_run(path, which, kinds) if "classifier" in kinds else gens[str(path)[-1]]
    monkeypatch.setattr(generate, "open_run", open_run)
    return gens


def _pool(g, size, seed=0):
    """What the test expects of the pool: probs [size, K] of the uint8 images, near-copy flags."""
    z = np.stack([np.random.default_rng([seed, i]).standard_normal(Z) for i in range(size)])
    imgs = np.clip(np.rint((g.generate(z) + 1) * 127.5), 0, 255).astype(np.uint8)
    return _np_probs(imgs), z[:, 1] > g.copy_above


def _kept_ids(out, name):
    return sorted(int(p.stem.split("_")[-1]) for p in (out / name).glob("*.png"))


def test_label_by_keeps_the_most_confident_per_class(uncond_run, brightness_classifier, real, tmp_path,
                                                     log_lines):
    out, n = tmp_path / "top", 6
    r = generate.export_dataset("runs/u", str(out), n, batch=16, real=real, datasheet=False, identity="pixel",
                                label_by=brightness_classifier, progress_every=0.0)
    probs, copy = _pool(uncond_run["u"], 4 * n * 3)
    acc = json.loads((out / "acceptance.json").read_text())
    assert acc["keep"] == "top" and acc["pool_per_stream"] == 72 and acc["teacher"] == brightness_classifier
    lines = [ln for ln in log_lines.read().splitlines() if ln.startswith("generate: acceptance")]
    for k, name in enumerate(NAMES):
        order = [i for i in np.argsort(-probs[:, k], kind="stable") if probs[i].argmax() == k]
        tried = order[:[j for j, i in enumerate(order) if not copy[i]][n - 1] + 1]   # up to the n-th non-copy
        want = sorted(i for i in tried if not copy[i])
        assert _kept_ids(out, name) == want, name
        a = acc["per_class"][name]
        assert (a["drawn"], a["argmax"], a["qualifying"], a["kept"]) == (72, len(order), len(order), n)
        assert a["argmax_counts"] == {c: int((probs.argmax(-1) == j).sum()) for j, c in enumerate(NAMES)}
        assert a["refused_identity"] == int(copy[tried].sum()) == r["refused"][name]
        assert a["mean_conf_kept"] == pytest.approx(probs[want, k].mean(), abs=1e-5)
        assert lines[k].startswith(f"generate: acceptance {name}: 72 drawn, argmax {len(order)}, ")
    assert sum(acc["per_class"][c]["refused_identity"] for c in NAMES) > 0      # near-copies were met
    rows = _rows(out)
    assert len(rows) == 3 * n == r["total"] == r["written"]
    on_disk = _np_probs(np.stack([np.asarray(Image.open(out / row["file"])) for row in rows]))
    got = np.array([row["teacher_probs"] for row in rows])
    np.testing.assert_allclose(got.sum(-1), 1, atol=1e-5)
    np.testing.assert_allclose(got, on_disk, atol=1e-5)
    for row in rows:
        i = int(row["file"][-9:-4])
        assert row["latent_seed"] == [0, i] and row["teacher"] == brightness_classifier
        assert row["class_index"] == NAMES.index(row["class_name"]) and row["identity"]["passed"]
    # Resume with the same settings: nothing new. A changed rerun is refused, nothing written.
    assert generate.export_dataset("runs/u", str(out), n, batch=16, real=real, datasheet=False,
                                   identity="pixel", label_by=brightness_classifier)["written"] == 0
    before, calls = _snapshot(out), uncond_run["u"].calls
    for change in (dict(psi=0.7), dict(num_per_class=5), dict(keep="threshold"), dict(pool_multiple=8),
                   dict(label_by="")):
        kw = dict(num_per_class=n, real=real, datasheet=False, identity="pixel",
                  label_by=brightness_classifier)
        with pytest.raises(OutputError, match=r"holds an export made with other settings \(.*\); nothing was"):
            generate.export_dataset("runs/u", str(out), **dict(kw, **change))
    assert _snapshot(out) == before and uncond_run["u"].calls == calls


def test_label_by_threshold_short_and_allow_short(uncond_run, brightness_classifier, real, tmp_path):
    n, kw = 4, dict(real=real, datasheet=False, identity="pixel", label_by=brightness_classifier)
    probs, copy = _pool(uncond_run["u"], 4 * n * 3)
    out = tmp_path / "thr"
    generate.export_dataset("runs/u", str(out), n, keep="threshold", min_conf=0.9, **kw)
    for k, name in enumerate(NAMES):   # stream order: the first qualifying candidates that are no copies
        ok = [i for i in range(len(probs)) if probs[i].argmax() == k and probs[i, k] >= 0.9 and not copy[i]]
        assert _kept_ids(out, name) == ok[:n], name
    # A pool of 1 x 4 x 3 = 12 candidates cannot fill every class at confidence 0.95.
    probs, copy = _pool(uncond_run["u"], 12)
    qualify = [(probs.argmax(-1) == k) & (probs[:, k] >= 0.95) for k in range(3)]
    found = [int(q.sum()) for q in qualify]
    first = next(k for k in range(3) if found[k] < n)
    short = dict(keep="threshold", min_conf=0.95, pool_multiple=1, **kw)
    with pytest.raises(ConfigError, match=rf"{NAMES[first]}: only {found[first]} of 12 candidates .* raise "
                                          r"--pool_multiple \(now 1\), lower --min_conf or train"):
        generate.export_dataset("runs/u", str(tmp_path / "short"), n, **short)
    assert not (tmp_path / "short").exists()
    r = generate.export_dataset("runs/u", str(tmp_path / "short"), n, allow_short=True, **short)
    acc = json.loads((tmp_path / "short" / "acceptance.json").read_text())["per_class"]
    fine = [int((q & ~copy).sum()) for q in qualify]       # qualifying and not a near-copy
    assert r["short"] == {NAMES[k]: fine[k] for k in range(3) if fine[k] < n} and NAMES[first] in r["short"]
    for k, c in enumerate(NAMES):
        assert (acc[c]["short"], acc[c]["qualifying"], acc[c]["kept"]) == \
            (fine[k] < n, found[k], min(n, fine[k]))
        assert len(_kept_ids(tmp_path / "short", c)) == min(n, fine[k])


def test_label_by_errors_before_output_and_conditional_filter(uncond_run, brightness_classifier, real,
                                                               tmp_path, capsys):
    out = tmp_path / "none"
    with pytest.raises(ConfigError, match="runs/u is an unconditional generator: it has no classes; pass "
                                          "--label_by"):
        generate.export_dataset("runs/u", str(out), 2, real=real, datasheet=False)
    with pytest.raises(ConfigError, match=r"--label_by .*bright: its classes \(healthy, mild, severe\) are "
                                          r"not the export's classes of runs/u \(a, b, c, in this order\)"):
        generate.export_dataset("runs/u", str(out), 2, class_names=["a", "b", "c"], real=real, datasheet=False,
                                label_by=brightness_classifier)
    uncond_run["x"].class_names = NAMES[::-1]
    with pytest.raises(ConfigError, match=r"are not the export's classes of runs/x \(severe, mild, healthy"):
        generate.export_dataset("runs/x", str(out), 2, real=real, datasheet=False,
                                label_by=brightness_classifier)
    with pytest.raises(ConfigError, match="--keep, --min_conf: only with --label_by"):
        generate_command.main(["--checkpoint", "runs/x", "--out", str(out), "--keep", "top", "--min_conf", "0.2"])
    assert not out.exists()
    # A conditional generator: class-filtered sampling, each kept face put in its own class.
    uncond_run["x"].class_names = NAMES
    cond = tmp_path / "cond"
    assert generate_command.main(["--checkpoint", "runs/x", "--out", str(cond), "--num_per_class", "3", "--real", real,
                          "--no_datasheet", "--identity", "pixel", "--label_by", brightness_classifier,
                          "--allow_short", "--pool_multiple", "2"]) == 0
    acc = json.loads((cond / "acceptance.json").read_text())["per_class"]
    for k, name in enumerate(NAMES):
        z = np.stack([np.random.default_rng([0, k, i]).standard_normal(Z) for i in range(6)])
        p = _np_probs(np.clip(np.rint((_pattern(z, np.full(6, k)) + 1) * 127.5), 0, 255).astype(np.uint8))
        order = [i for i in np.argsort(-p[:, k], kind="stable") if p[i].argmax() == k]
        assert _kept_ids(cond, name) == sorted(order[:3]) and acc[name]["argmax"] == len(order)
    rows = _rows(cond)
    assert rows and all(r["latent_seed"][:2] == [0, r["class_index"]] and
                        np.argmax(r["teacher_probs"]) == r["class_index"] for r in rows)
    assert "wrote" in capsys.readouterr().out
    # A plain conditional export rerun with another psi: refused, nothing written (no stale images).
    plain = tmp_path / "plain"
    generate.export_dataset("runs/x", str(plain), 2, real=real, datasheet=False, identity="pixel")
    before = _snapshot(plain)
    with pytest.raises(OutputError, match=r"other settings \(psi: 1\.0 -> 0\.5\); nothing was written"):
        generate.export_dataset("runs/x", str(plain), 2, psi=0.5, real=real, datasheet=False, identity="pixel")
    assert _snapshot(plain) == before


# ---- a rerun into an export's own folder keeps it consistent (issue 28, item 7) ----

def _class_pngs(out: pathlib.Path) -> list:
    """Every PNG in the export's class folders (not the datasheet's nearest_real.png)."""
    return sorted(p.relative_to(out).as_posix() for p in out.glob("*/*.png"))


def test_changed_rerun_refused_rebuild_and_crash_strays_removed(fake_run, real, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(generate, "make_feature_net", _pixel_net)
    g, _ = fake_run
    g.variables, g.step = {"w": np.zeros(3, np.float32)}, 100
    kw = dict(num_per_class=4, batch=2, real=real, holdout=str(_real(tmp_path / "hold", seed=2)), identity="pixel")
    out = tmp_path / "syn"
    # A strict first run: about half the textures lie within 1.02, so its files reach past candidate 3.
    generate.export_dataset("runs/x", str(out), threshold=1.02, **kw)
    first = _class_pngs(out)
    assert len(first) == 12 and max(int(f[-9:-4]) for f in first) > 3
    before = _snapshot(out)
    with pytest.raises(OutputError, match=r"other settings \(identity_percentile: None -> 1\.0; identity_threshold: "
                                          r"1\.02 -> -1\.0\); nothing was written: .*--rebuild"):
        generate.export_dataset("runs/x", str(out), **kw)
    monkeypatch.delenv("JAXGEN_DEBUG", raising=False)
    with pytest.raises(SystemExit) as e:     # the command line: one line, exit status 2
        run_main(lambda: generate_command.main(["--checkpoint", "runs/x", "--out", str(out), "--num_per_class",
                                                 "4", "--real", real, "--identity", "pixel"]))
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "identity_threshold: 1.02 -> -1.0" in err[0]
    assert _snapshot(out) == before
    # --rebuild: the first run's images go, candidates 0-3 (all pass the calibrated check) are written.
    r = generate.export_dataset("runs/x", str(out), rebuild=True, **kw)
    rows = _rows(out)
    assert r["written"] == r["total"] == 12 and _class_pngs(out) == sorted(row["file"] for row in rows)
    assert {int(f[-9:-4]) for f in _class_pngs(out)} == {0, 1, 2, 3} and set(first) - set(_class_pngs(out))
    # A crash: images written but never listed (a finished one, a cut temporary one), rows lost.
    (out / "healthy" / "healthy_00009.png").write_bytes((out / "healthy" / "healthy_00000.png").read_bytes())
    (out / "mild" / "mild_00002.tmp.png").write_bytes(b"\x89PNG cut")
    (out / "severe" / "notes.png").write_bytes((out / "severe" / "severe_00000.png").read_bytes())  # the user's
    (out / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows[:5]))
    r = generate.export_dataset("runs/x", str(out), **kw)
    assert r["written"] == 0 and r["total"] == 12 and _rows(out) == rows
    assert _class_pngs(out) == sorted([row["file"] for row in rows] + ["severe/notes.png"])
    sheet = json.loads((out / "datasheet.json").read_text())   # exactly the listed images are scored
    assert sum(sheet["counts"]["synthetic"].values()) == len(rows) == len((out / "images.csv").read_text()
                                                                            .splitlines()) - 1
    # Other generator weights at the same path: refused once it is opened, naming the generator.
    g.variables = {"w": np.ones(3, np.float32)}
    with pytest.raises(OutputError, match=r"other settings \(generator: .*'params_sha256'.*--rebuild"):
        generate.export_dataset("runs/x", str(out), **kw)
    assert _rows(out) == rows
