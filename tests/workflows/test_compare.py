"""jaxgen.workflows.compare: one table across generated-image folders, GAN runs and baselines.

16 px depth faces, a handful of images, a tiny fixed random-projection feature
net (the Inception fallback would dominate the runtime) and a 10-tree XGBoost.
"""
import json

import jax
import numpy as np
import pytest
from PIL import Image

from jaxgen.workflows import compare as C
from jaxgen.data.depth_faces import EXPRESSIONS, write_depth_dataset
from jaxgen.metrics import suite

XLA_FAST_COMPILE = True   # compile-bound, no golden files: see tests/conftest.py

RES, N_PER = 16, 6
XGB = dict(n_estimators=10, max_depth=2, n_jobs=1)


def tiny_net() -> suite.FeatureNet:
    """Fixed random projection of the pixels: 'pool3' [N, 32], 'logits' [N, 10]."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((RES * RES, 32)).astype(np.float32) / RES
    v = rng.standard_normal((32, 10)).astype(np.float32)

    def fn(images):
        x = np.asarray(images, np.float32).reshape(len(images), -1) / 127.5 - 1.0
        f = np.tanh(x @ w)
        return {"pool3": f, "logits": f @ v}
    return suite.FeatureNet("tiny_test", False, fn)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    train = write_depth_dataset(root / "train", 8, RES, seed=0, progress=False, preview=False)
    test = write_depth_dataset(root / "test", 8, RES, seed=1, progress=False, preview=False)
    noise, few, one = root / "noise", root / "few", root / "one_class"
    rng = np.random.default_rng(3)
    for c in EXPRESSIONS:
        for folder, n in ((noise, N_PER), (few, 3)) + (((one, 2),) if c == "happy" else ()):
            (folder / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (RES, RES), dtype=np.uint8)).save(
                    folder / c / f"{i}.png")
    Image.new("L", (40, 40)).save(few / "preview.png")          # as evolve.py exports have
    return dict(root=root, train=train, test=test, noise=noise, few=few, one=one)


def run(data, out, methods, **kw):
    return C.compare_methods(methods, data["train"], data["test"], out, num_per_class=N_PER,
                             resolution=RES, channels=1, feature_net=tiny_net(), seed=0,
                             xgb_params=XGB, **kw)


def methods(data):
    return {"copies": str(data["test"]), "noise": {"kind": "folder", "path": str(data["noise"])},
            "gmm": {"kind": "gmm", "n_components": 2, "pca_dim": 4}, "few": str(data["few"]),
            "one": str(data["one"]),
            "ga": {"kind": "folder", "path": str(data["root"] / "nope"),
                   "make": "python evolve.py --out nope"}}


@pytest.fixture(scope="module")
def first(data):
    out = data["root"] / "out"
    return out, run(data, out, methods(data))


def test_writes_table_json_and_pngs(first):
    out, res = first
    assert [r["method"] for r in res["rows"]] == ["copies", "noise", "gmm", "few"]
    assert [r["num_images"] for r in res["rows"]] == [N_PER * 4] * 3 + [3 * 4]
    for r in res["rows"]:
        for k in ("fid", "kid", "is", "ssim_nn", "psnr_nn", "accuracy", "macro_f1"):
            assert np.isfinite(r[k]), (r["method"], k)
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["macro_f1"] <= 1
    md = (out / "comparison.md").read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len(table) == 2 + 4                                   # header, rule, one row per method
    assert "FID ↓ [tiny_test]" in table[0] and "XGB macro F1" in table[0]
    assert "NOT comparable" in md and "tiny_test" in md and "fewer images than the others: few" in md
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["rows"][2]["fid"] == pytest.approx(res["rows"][2]["fid"])
    assert saved["settings"]["class_names"] == sorted(EXPRESSIONS)
    for m in ("copies", "noise", "gmm"):
        with Image.open(out / f"samples_{m}.png") as im:
            assert im.height > 4 * RES
        assert len(list((out / "samples" / m / "happy").glob("*.png"))) == N_PER
    with Image.open(out / "samples.png") as im:                  # real block + 4 methods
        assert im.height > 5 * 4 * 48


def test_copies_of_real_test_beat_noise(first):
    rows = {r["method"]: r for r in first[1]["rows"]}
    cp, nz = rows["copies"], rows["noise"]
    assert cp["fid"] < nz["fid"] and cp["kid"] < nz["kid"]
    assert cp["ssim_nn"] > nz["ssim_nn"] + 0.2 and cp["psnr_nn"] > nz["psnr_nn"]
    assert cp["accuracy"] > nz["accuracy"]
    assert cp["exact_copies"] == 0                               # test faces are not train faces


def test_missing_source_is_skipped_with_the_command(first, capsys):
    out, res = first
    one, skip = res["skipped"]
    assert skip["method"] == "ga" and "does not exist" in skip["reason"]
    assert "python evolve.py --out nope" in skip["reason"]
    assert one["method"] == "one" and "no images of class(es) ['neutral', 'sad'" in one["reason"]
    assert "python evolve.py --out nope" in (out / "comparison.md").read_text()


def test_rerun_reuses_cached_samples_and_metrics(first, data, monkeypatch, log_lines):
    out, res = first
    pngs = sorted((out / "samples").rglob("*.png"))
    stamps = {p: p.stat().st_mtime_ns for p in pngs}

    def boom(*a, **k):
        raise AssertionError("the GMM was fitted again")
    monkeypatch.setattr("jaxgen.baselines.density.fit_density", boom)
    monkeypatch.setattr(C, "score_method", boom)
    res2 = run(data, out, methods(data))
    assert {p: p.stat().st_mtime_ns for p in pngs} == stamps
    assert "reusing" in log_lines.read()
    assert [r["fid"] for r in res2["rows"]] == [r["fid"] for r in res["rows"]]


def _dcgan_run(wd):
    """A DCGAN run directory as the trainer leaves it: run.json + a checkpoint holding the
    teacher G and D (random weights: compare only needs something to sample)."""
    import ml_collections
    from jaxgen.dcgan.models import build, model_kwargs
    from jaxgen.harness.checkpoint import TrainCheckpointer, write_descriptor
    cfg = ml_collections.ConfigDict(dict(z_dim=8, embed_dim=4, widths=(16, 8, 8)))
    gk, dk = model_kwargs(cfg, RES, 1, 4)
    G, D = build(gk, dk)
    c = np.zeros([2], np.int32)
    g = jax.jit(G.init)(jax.random.key(0), np.zeros([2, 8], np.float32), c)["params"]
    d = jax.jit(D.init)(jax.random.key(1), np.zeros([2, RES, RES, 1], np.float32), c)["params"]
    ck = TrainCheckpointer(wd)
    ck.save(0, dict(step=np.zeros((), np.int32), g_teacher=g, d_params=d), dict(tick=0))
    ck.close()
    write_descriptor(wd, "dcgan", class_names=EXPRESSIONS, resolution=RES, channels=1,
                     G_kwargs=gk, D_kwargs=dk)


def _stylegan2_run(wd):
    """A StyleGAN2 networks directory (as pkl_to_orbax writes) at 16 px, grayscale, 4 classes."""
    from jaxgen.harness.checkpoint import save_networks
    from jaxgen.stylegan2 import networks
    gk = dict(z_dim=16, w_dim=16, c_dim=4, img_resolution=RES, img_channels=1, channel_base=128,
              channel_max=16, mapping_layers=2)
    dk = dict(c_dim=4, img_resolution=RES, img_channels=1, channel_base=128, channel_max=16)
    G, D = networks.build(gk, dk)
    g, d = networks.init_variables(G, D, jax.random.key(0))
    save_networks(wd, gk, dk, dict(G=g, D=d, G_ema=g), class_names=list(EXPRESSIONS))


def test_changed_settings_regenerate_and_gan_run_sources(data, tmp_path):
    wd, sg2 = tmp_path / "gan", tmp_path / "sg2"
    _dcgan_run(wd)
    _stylegan2_run(sg2)
    assert C.parse_source(str(wd))["kind"] == "gan" and C.parse_source(str(sg2))["kind"] == "gan"
    assert C.parse_source(str(data["noise"]))["kind"] == "folder"
    assert C.parse_source("kde") == {"kind": "kde"}
    with pytest.raises(ValueError, match="unknown sample source kind"):
        C.parse_source({"kind": "diffusion"})
    res = run(data, tmp_path / "out", {"gan": str(wd), "sg2": str(sg2)})
    row, row2 = res["rows"]
    assert row["source"] == f"gan {wd}" and np.isfinite(row["fid"])
    assert row2["source"] == f"gan {sg2}" and np.isfinite(row2["fid"]) and row2["num_images"] == 4 * N_PER
    first_png = tmp_path / "out" / "samples" / "gan" / "sad" / "sad_00000.png"
    before = np.asarray(Image.open(first_png))
    res = C.compare_methods({"gan": str(wd)}, data["train"], data["test"], tmp_path / "out",
                            num_per_class=N_PER, resolution=RES, feature_net=tiny_net(), seed=1,
                            xgb_params=XGB, verbose=False)
    assert res["rows"][0]["num_images"] == 4 * N_PER
    assert len(list((tmp_path / "out" / "samples" / "gan" / "sad").glob("*.png"))) == N_PER
    assert not np.array_equal(np.asarray(Image.open(first_png)), before)   # new seed, new samples
