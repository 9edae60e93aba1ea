"""evolve: fitness terms, de-identification at export, GA improvement, resumable export, CLI."""
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxgen.classifiers.models import build_classifier
from jaxgen.classifiers.sorting import to_classifier_input
from jaxgen.config import load_config
from jaxgen.evolve import fitness as F
from jaxgen.evolve import latents as L
from jaxgen.evolve import terms as T
from jaxgen.evolve.export import evolve_dataset
from jaxgen.evolve.export_config import ClassTask, ExportConfig
from jaxgen.evolve.ga import GAConfig
from jaxgen.errors import OutputError
from jaxgen.identity.search import IdentityCheck, make_embedder, nearest_identity
from jaxgen.identity.pixel_embedder import pixel_features
from jaxgen.evolve.tasks import build_tasks
from jaxgen.harness.checkpoint import save_networks
from jaxgen.stylegan2 import networks
from jaxgen.utils.outputs import read_marker
from jaxgen.workflows.datasheet import synthetic_images

XLA_FAST_COMPILE = True   # compile-bound, no golden files: see tests/conftest.py

REPO = pathlib.Path(__file__).resolve().parents[2]
GK = dict(z_dim=16, w_dim=16, c_dim=3, img_resolution=16, img_channels=3, channel_base=256,
          channel_max=16, mapping_layers=2)
DK = dict(c_dim=3, img_resolution=16, img_channels=3, channel_base=256, channel_max=16)
CLASS = np.eye(3, dtype=np.float32)[1]


@pytest.fixture(scope="module")
def gan():
    G, D = networks.build(GK, DK)
    # Compiled (not op by op): the same values, in less time.
    g, d = jax.jit(lambda key: networks.init_variables(G, D, key))(jax.random.key(0))
    mean, std = L.w_statistics(G, g, CLASS, jax.random.PRNGKey(0))
    synth = jax.jit(lambda g, ws: G.apply(g, ws, "const", method=type(G).synthesize))
    return dict(G=G, D=D, g=g, d=d, mean=mean, std=std, synth=synth)


def _inputs(gan, term_vars=(), **kw):
    return F.Inputs.create(gan["g"], w_mean=gan["mean"], w_std=gan["std"], c=CLASS,
                           term_vars=dict(term_vars, realism=gan["d"]), **kw)


def _start_genome(gan, space, seed, psi):
    """The starting genome of round 0 of class 0, as evolve_dataset derives it."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), 0), 0)
    k_z, _ = jax.random.split(key)
    z = jax.random.normal(k_z, (1, GK["z_dim"]))
    return L.seed_genomes(gan["G"], gan["g"], space, CLASS, gan["mean"], gan["std"], z, psi)


def test_terms_match_direct_computation(gan):
    G, D = gan["G"], gan["D"]
    clf = build_classifier("small_cnn", 4)
    clf_vars = jax.jit(lambda k: clf.init(k, jnp.zeros([1, 16, 16, 1]), train=False))(jax.random.key(1))
    sc = F.make_scorer(G, (T.ClassConfidence(model=clf, resolution=16, channels=1, weight=1.0),
                           T.StyleGANRealism(D=D, weight=0.5),
                           T.Identity(embed=T.PixelEmbed(16), threshold=0.3, weight=1.0),
                           T.ImageStats(stats_std=10.0, stats_mean=5.0, weight=0.2),
                           T.Diversity(feature_size=16, weight=0.3)))
    genomes = jax.random.normal(jax.random.PRNGKey(2), (6, sc.space.dim))
    refs = jax.random.normal(jax.random.PRNGKey(3), (5, 16, 16, 3))
    ref_emb, ref_ok = pixel_features(refs, 16, 0.5)
    aux = _inputs(gan, {"class": clf_vars}, target=2, ref_emb=ref_emb, ref_ok=ref_ok)
    terms, img = F.jit_terms(sc)(genomes, aux)
    raw = np.asarray(img)
    ws = gan["mean"] + gan["std"] * np.asarray(genomes).reshape(6, G.num_ws, 16)
    np.testing.assert_allclose(raw, gan["synth"](gan["g"], ws),
                               atol=1e-5)
    img = np.clip(raw, -1, 1)  # every term but D's sees the exported (clipped) image
    probs = jax.nn.softmax(clf.apply(clf_vars, to_classifier_input(img, 16, 1), train=False))
    np.testing.assert_allclose(terms["class"], probs[:, 2], atol=1e-5)
    logits = jax.jit(D.apply)(gan["d"], jnp.concatenate([raw, raw[-2:]]), jnp.tile(CLASS, (8, 1)))[:6, 0]
    np.testing.assert_allclose(terms["realism"], jax.nn.sigmoid(logits), atol=1e-5)
    gray = img.mean(-1)
    np.testing.assert_allclose(terms["stats"], 10 * gray.std((1, 2)) - 5 * np.abs(gray.mean((1, 2))),
                               rtol=1e-4)
    emb, _ = pixel_features(img, 16, 0.5)
    d, j = nearest_identity(np.asarray(emb), np.asarray(ref_emb))
    np.testing.assert_allclose(terms["identity_distance"], d, atol=1e-4)
    np.testing.assert_array_equal(terms["identity_index"], j)
    np.testing.assert_allclose(terms["identity"], np.minimum(d / 0.3, 1.5), atol=1e-3)
    e = np.asarray(emb)
    pd = np.linalg.norm(e[:, None] - e[None], axis=-1) + np.eye(6) * 9
    np.testing.assert_allclose(terms["diversity"], pd.min(1), atol=1e-4)
    total = 1.0 * terms["class"] + 0.5 * terms["realism"] + terms["identity"] + \
        0.2 * terms["stats"] + 0.3 * terms["diversity"]
    np.testing.assert_allclose(jax.jit(sc.fitness)(genomes, aux), total, rtol=1e-5)
    with pytest.raises(ValueError, match="w_class"):
        T.ClassConfidence(model=None, resolution=16, channels=1, weight=1.0)


def test_host_identity_callback_inside_jit(gan):
    """A numpy embedder (dlib's stand-in: any host code) runs via pure_callback in the jitted terms."""
    calls = []

    class HostPixels:
        name, dim, threshold = "host_pixels", 16 * 16 * 3, 0.3

        def embed(self, u8):
            calls.append(u8.shape)
            assert u8.dtype == np.uint8 and u8.shape[-1] == 3
            e, ok = pixel_features(u8.astype(np.float32), 16)
            return np.asarray(e), np.asarray(ok)

    sc = F.make_scorer(gan["G"], [T.Identity(embed=T.HostEmbed(HostPixels()), threshold=0.3)])
    genomes = jax.random.normal(jax.random.PRNGKey(5), (4, sc.space.dim))
    ref_emb, _ = pixel_features(jax.random.normal(jax.random.PRNGKey(6), (3, 16, 16, 3)), 16, 0.5)
    terms, img = F.jit_terms(sc)(genomes, _inputs(gan, ref_emb=ref_emb, ref_ok=jnp.ones(3, bool)))
    assert calls == [(4, 16, 16, 3)]
    u8 = np.clip(np.round((np.asarray(img) + 1) * 127.5), 0, 255)
    d, _ = nearest_identity(np.asarray(pixel_features(u8, 16)[0]), np.asarray(ref_emb))
    np.testing.assert_allclose(terms["identity_distance"], d, atol=1e-4)


def _terms(gan, w_realism, w_identity, w_stats, w_diversity):
    """The export tests' fitness: D realism, pixel identity, image statistics, diversity."""
    return (T.StyleGANRealism(D=gan["D"], weight=w_realism),
            T.Identity(embed=T.PixelEmbed(16), threshold=0.3, weight=w_identity),
            T.ImageStats(weight=w_stats), T.Diversity(weight=w_diversity))


def _task(gan, terms, refs_u8, name="b"):
    sc = F.make_scorer(gan["G"], terms)
    ref_emb, ref_ok = pixel_features(refs_u8.astype(np.float32), 16)
    inputs = _inputs(gan, ref_emb=ref_emb, ref_ok=ref_ok)
    return ClassTask(name, sc, inputs, None, "random-init", [f"real_{i}.png" for i in range(len(refs_u8))],
                     "pixel_not_identity")


def _planted_refs(gan, space, seed=0, psi=0.7, n_other=3):
    """Real faces = a near-copy (+ pixel noise) of round 0's start image, and random others."""
    x0 = _start_genome(gan, space, seed, psi)
    others = jax.random.normal(jax.random.PRNGKey(9), (n_other, space.dim))
    G = gan["G"]
    ws = space.to_ws(jnp.concatenate([x0, others]), gan["mean"], gan["std"])
    img = np.asarray(gan["synth"](gan["g"], ws))
    u8 = np.clip(np.round((img + 1) * 127.5), 0, 255)
    noise = np.random.default_rng(0).integers(-3, 4, u8.shape)
    return np.clip(u8 + noise, 0, 255).astype(np.uint8)


def test_planted_near_copy_is_rejected_then_evolved_away(gan, tmp_path):
    fit_terms = _terms(gan, w_realism=0.1, w_identity=1.0, w_stats=0, w_diversity=0)
    space = L.LatentSpace(gan["G"].num_ws, 16)
    refs = _planted_refs(gan, space)
    task = _task(gan, fit_terms, refs)
    x0 = _start_genome(gan, space, 0, 0.7)
    t, _ = F.jit_terms(task.scorer)(jnp.tile(x0, (4, 1)), task.inputs)
    assert float(t["identity_distance"][0]) < 0.05  # the planted copy is found ...
    assert int(t["identity_index"][0]) == 0          # ... as real face 0

    # Mutations too small to leave the copy: every candidate is rejected, nothing written.
    frozen = GAConfig(popsize=8, generations=2, sigma_init=0.005)
    s = evolve_dataset([task], frozen, ExportConfig(num_per_class=2, per_round=2, max_rounds=1),
                       str(tmp_path / "frozen"))
    assert s["classes"]["b"]["exported"] == 0
    assert s["classes"]["b"]["rejected"]["identity_too_close_to_real"] >= 2
    assert not list((tmp_path / "frozen" / "b").glob("*.png"))

    # Free to move: the identity term pushes the faces away; exported ones are all > threshold.
    free = GAConfig(popsize=8, generations=6, sigma_init=0.8)
    s = evolve_dataset([task], free, ExportConfig(num_per_class=2, per_round=2, max_rounds=3),
                       str(tmp_path / "free"))
    rows = [json.loads(x) for x in (tmp_path / "free" / "metadata.jsonl").read_text().splitlines()]
    assert s["classes"]["b"]["exported"] == 2 == len(rows)
    assert all(r["identity"]["nearest_real_distance"] > 0.3 for r in rows)
    # The check at export agrees with a fresh embedding of the written files.
    written = np.stack([np.asarray(Image.open(tmp_path / "free" / r["file"])) for r in rows])
    d, _ = nearest_identity(np.asarray(pixel_features(written.astype(np.float32), 16)[0]),
                            np.asarray(task.inputs.ref_emb))
    np.testing.assert_allclose(d, [r["identity"]["nearest_real_distance"] for r in rows], atol=0.02)


def test_fitness_improves_and_export_resumes_identically(gan, tmp_path):
    fit_terms = _terms(gan, w_realism=0.5, w_identity=0.5, w_stats=0.2, w_diversity=0.5)
    space = L.LatentSpace(gan["G"].num_ws, 16)
    task = _task(gan, fit_terms, _planted_refs(gan, space))
    ga = GAConfig(popsize=16, generations=10, sigma_init=0.5, crossover="style_mix", mix_rate=0.3,
                  num_ws=gan["G"].num_ws, w_dim=16)
    full = ExportConfig(num_per_class=6, per_round=2)
    evolve_dataset([task], ga, full, str(tmp_path / "a"))
    prog = json.loads((tmp_path / "a" / "progress.json").read_text())["b"]
    assert prog["exported"] == 6 and prog["rounds"] >= 3
    for h in prog["history"]:
        assert h["best"][-1] >= h["max"][0]
        assert np.all(np.diff(h["best"]) >= 0)
    gains = [h["best"][-1] - h["max"][0] for h in prog["history"]]
    assert np.mean(gains) > 0.05, gains  # the GA raises fitness over its generations

    # Interrupted run: 1 round, then a crash in round 2 (its images + metadata written,
    # progress not), then the same command again.
    b = tmp_path / "b"
    evolve_dataset([task], ga, ExportConfig(num_per_class=4, per_round=2), str(b))
    prog_b = json.loads((b / "progress.json").read_text())
    prog_b["b"]["rounds"] -= 1
    prog_b["b"]["history"].pop()
    (b / "progress.json").write_text(json.dumps(prog_b))
    with open(b / "metadata.jsonl", "a") as f:
        f.write('{"file": "b/b_00004.png", "class_name": "b", "rou')  # cut mid-line
    evolve_dataset([task], ga, full, str(b))
    rows_a = (tmp_path / "a" / "metadata.jsonl").read_text().splitlines()
    rows_b = (b / "metadata.jsonl").read_text().splitlines()
    assert len(rows_b) == 6
    for ra, rb in zip(rows_a, rows_b):
        ra, rb = json.loads(ra), json.loads(rb)
        assert ra["file"] == rb["file"] and ra["round"] == rb["round"]
        np.testing.assert_allclose(ra["fitness"], rb["fitness"], rtol=1e-4)
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a" / ra["file"])),
                                      np.asarray(Image.open(b / rb["file"])))
        np.testing.assert_allclose(np.load(tmp_path / "a" / ra["latent"]), np.load(b / rb["latent"]),
                                   atol=1e-5)
    # Exported faces differ from each other (diversity check at export).
    imgs = np.stack([np.asarray(Image.open(b / json.loads(r)["file"])) for r in rows_b])
    e = np.asarray(pixel_features(imgs.astype(np.float32), 16)[0])
    pd = np.linalg.norm(e[:, None] - e[None], axis=-1) + np.eye(len(e)) * 9
    assert pd.min() > 0.05
    for name in ("fitness.png", "preview.png", "evolve.json"):
        assert (b / name).stat().st_size > 0
    with pytest.raises(ValueError, match="outside the output directory"):
        evolve_dataset([_task(gan, fit_terms, _planted_refs(gan, space), name="../escape")], ga, full,
                       str(tmp_path / "c"))


def _listed(out: pathlib.Path):
    rows = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    files = sorted(p.relative_to(out).as_posix() for p in out.glob("b/*.png"))
    latents = sorted(p.relative_to(out).as_posix() for p in out.glob("latents/b/*.npy"))
    return rows, files, latents


def test_export_consistent_on_rerun_changed_settings_and_strays(gan, tmp_path):
    """Issue 28 item 7: the folder holds exactly what metadata.jsonl lists; another setting is refused
    (or rebuilt); the pixel identity is the calibrated, shift-tolerant near-copy check."""
    space = L.LatentSpace(gan["G"].num_ws, 16)
    refs = _planted_refs(gan, space)
    task = _task(gan, _terms(gan, w_realism=0.1, w_identity=1.0, w_stats=0, w_diversity=0), refs)
    task.near_copy = IdentityCheck(make_embedder("pixel"), refs, task.ref_files)
    ga, out = GAConfig(popsize=8, generations=6, sigma_init=0.8), tmp_path / "ev"
    cfg = ExportConfig(num_per_class=2, per_round=2, max_rounds=3)
    evolve_dataset([task], ga, cfg, str(out))
    rows, files, latents = _listed(out)
    assert len(rows) == 2 and files == sorted(r["file"] for r in rows) and latents == sorted(r["latent"] for r in rows)
    thr = task.near_copy.threshold
    assert all(r["identity"]["threshold"] == thr and r["identity"]["nearest_real_distance"] > thr and
               r["identity"]["calibration"]["threshold"] == thr for r in rows)
    before = _snapshot(out)
    with pytest.raises(OutputError, match=r"other settings \(export\.export\.psi: 0\.7 -> 0\.5\); nothing was "
                                          r"written.*--rebuild"):
        evolve_dataset([task], ga, ExportConfig(num_per_class=2, per_round=2, max_rounds=3, psi=0.5), str(out))
    assert _snapshot(out) == before
    # A crash: an image and latent written but never listed, a cut temporary image; then more images.
    (out / "b" / "b_00007.png").write_bytes((out / rows[0]["file"]).read_bytes())
    np.save(out / "latents" / "b" / "b_00007.npy", np.zeros(3))
    (out / "b" / "b_00001.tmp.png").write_bytes(b"\x89PNG cut")
    evolve_dataset([task], ga, ExportConfig(num_per_class=3, per_round=2, max_rounds=3), str(out))
    rows3, files, latents = _listed(out)
    assert rows3[:2] == rows and len(rows3) == 3 and files == sorted(r["file"] for r in rows3)
    assert latents == sorted(r["latent"] for r in rows3) and "b/b_00007.png" not in files
    assert len(synthetic_images(out, 16)) == len(rows3)      # what a datasheet of the folder scores
    # --rebuild with the other psi: the earlier images go, the new export is whole.
    s = evolve_dataset([task], ga, ExportConfig(num_per_class=2, per_round=2, max_rounds=3, psi=0.5), str(out),
                       rebuild=True)
    rows_b, files, latents = _listed(out)
    assert len(rows_b) == s["classes"]["b"]["exported"] == 2 and files == sorted(r["file"] for r in rows_b)
    assert latents == sorted(r["latent"] for r in rows_b) and all(r["start_psi"] == 0.5 for r in rows_b)
    assert read_marker(out)["settings"]["export"]["export"]["psi"] == 0.5


def _snapshot(root: pathlib.Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def test_evolve_cli_two_devices(gan, tmp_path, jax_cache_dir):
    """evolve.py end to end from a networks checkpoint, population sharded over 2 CPU devices."""
    save_networks(tmp_path / "gan", GK, DK, dict(G=gan["g"], D=gan["d"], G_ema=gan["g"]),
                  class_names=["mild", "moderate", "severe"])
    real = tmp_path / "real"
    rng = np.random.default_rng(0)
    for cls in ("mild", "moderate", "severe"):
        (real / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(real / cls / f"{i}.png")
    env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu",
               PYTHONPATH=str(REPO), JAXGEN_JAX_CACHE=str(jax_cache_dir))  # the session's cache
    out = tmp_path / "evolved"
    cmd = [sys.executable, str(REPO / "evolve.py"), "--config", str(REPO / "configs/evolve_acne.py:micro"),
           f"--config.generator={tmp_path / 'gan'}", "--config.real.source=folder",
           f"--config.real.path={real}", "--config.classes=mild,severe", f"--out={out}"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "9 embedded by pixel_not_identity" in r.stdout
    assert "terms ['realism', 'identity', 'diversity']" in r.stdout
    rows = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    assert sorted(r["class_name"] for r in rows) == ["mild", "mild", "severe", "severe"]
    summary = json.loads((out / "evolve.json").read_text())
    assert summary["settings"]["devices"] == 2
    for row in rows:
        assert (out / row["file"]).exists()
        assert np.load(out / row["latent"]).shape == (gan["G"].num_ws, 16)
        assert row["identity"]["nearest_real_file"].startswith(str(real))


def test_config_errors_name_the_field(gan, tmp_path):
    """Expected user errors of evolve.py: one line naming the --config field to fix."""
    save_networks(tmp_path / "gan", GK, DK, dict(G=gan["g"], D=gan["d"], G_ema=gan["g"]),
                  class_names=["mild", "moderate", "severe"])
    good = dict(generator=str(tmp_path / "gan"), identity="none", classes="mild")
    cases = [(dict(generator=str(tmp_path / "nope")), "--config.generator=.*does not exist"),
             (dict(generator=str(tmp_path / "gan_{class}")), "--config.generator=.*gan_mild"),
             (dict(classes="mild,spots"), "--config.classes: 'spots' is not a class of the generator"),
             (dict(realism="detector"), "--config.detector="),
             (dict(identity="faces"), "--config.identity='faces'"),
             (dict(classifier=str(tmp_path / "gan")), "--config.classifier=.*stylegan2 run")]
    for change, message in cases:
        config = load_config(str(REPO / "configs/evolve_acne.py:micro"))
        config.update(dict(good, **change))
        with pytest.raises(ValueError, match=message):
            build_tasks(config)


def test_dcgan_latents_evolve_for_image_statistics(tmp_path):
    """Depth-faces GA: z of the conditional DCGAN, fitness 10*std - 5*|mean| (+ realism from its D)."""
    from jaxgen.dcgan.models import Discriminator, Generator
    G = Generator(resolution=16, channels=1, num_classes=4, z_dim=8, widths=(16, 8, 8))
    D = Discriminator(resolution=16, channels=1, num_classes=4, widths=(16, 8, 8))
    g = jax.jit(G.init)(jax.random.key(0), jnp.zeros([1, 8]), jnp.zeros([1], jnp.int32))["params"]
    d = jax.jit(D.init)(jax.random.key(1), jnp.zeros([1, 16, 16, 1]), jnp.zeros([1], jnp.int32))["params"]
    dec = L.DCGANDecoder(G)
    sc = F.make_scorer(dec, (T.DCGANRealism(D=D, weight=0.1), T.ImageStats(weight=1.0),
                             T.Diversity(weight=0.2)))
    aux = F.Inputs.create({"params": g}, label=2, term_vars={"realism": {"params": d}})
    z = jax.random.normal(jax.random.PRNGKey(3), (5, 8))
    terms, img = F.jit_terms(sc)(z, aux)
    np.testing.assert_allclose(img, jax.jit(G.apply)({"params": g}, z, jnp.full([5], 2)), atol=1e-6)
    gray = np.clip(np.asarray(img), -1, 1)[..., 0]
    np.testing.assert_allclose(terms["stats"], 10 * gray.std((1, 2)) - 5 * np.abs(gray.mean((1, 2))),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(terms["realism"],
                               jax.nn.sigmoid(D.apply({"params": d}, img, jnp.full([5], 2))), atol=1e-6)
    task = ClassTask("sad", sc, aux, None, "dcgan", [], "")
    s = evolve_dataset([task], GAConfig(popsize=16, generations=8, sigma_init=0.5),
                       ExportConfig(num_per_class=2, per_round=2, psi=1.0), str(tmp_path))
    h = json.loads((tmp_path / "progress.json").read_text())["sad"]["history"][0]
    assert s["classes"]["sad"]["exported"] == 2
    assert h["best"][-1] > h["max"][0] + 0.05, h  # the GA raised the statistics fitness
    row = json.loads((tmp_path / "metadata.jsonl").read_text().splitlines()[0])
    assert row["latent_space"] == "z [z_dim]" and np.load(tmp_path / row["latent"]).shape == (8,)
    assert np.asarray(Image.open(tmp_path / row["file"])).ndim == 2  # grayscale PNG


def test_detector_realism_term(gan):
    """realism='detector': a real-vs-synthetic classifier's probability of its 'real' class."""
    det = build_classifier("small_cnn", 2)
    det_vars = jax.jit(lambda k: det.init(k, jnp.zeros([1, 8, 8, 3]), train=False))(jax.random.key(4))
    sc = F.make_scorer(gan["G"], [T.DetectorRealism(model=det, resolution=8, channels=3, real_index=1)])
    genomes = jax.random.normal(jax.random.PRNGKey(7), (4, sc.space.dim))
    aux = F.Inputs.create(gan["g"], w_mean=gan["mean"], w_std=gan["std"], c=CLASS,
                          term_vars={"realism": det_vars})
    terms, img = F.jit_terms(sc)(genomes, aux)
    x = to_classifier_input(np.clip(np.asarray(img), -1, 1), 8, 3)
    p = jax.nn.softmax(det.apply(det_vars, x, train=False))[:, 1]
    np.testing.assert_allclose(terms["realism"], p, atol=1e-5)
    np.testing.assert_allclose(jax.jit(sc.fitness)(genomes, aux), p, atol=1e-5)
