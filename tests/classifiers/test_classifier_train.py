"""Classifier training on the demo faces (learns; resumable; report), generation export, sorting."""
import json
import pathlib

import jax
import numpy as np
import pytest

from jaxgen.classifiers import train as ct
from jaxgen.classifiers.evaluate import evaluate_classifier, predict
from jaxgen.config import load_config
from jaxgen.data.demo_faces import write_demo_dataset
from jaxgen.runs import open_run

CONFIG = str(pathlib.Path(__file__).resolve().parents[2] / "configs" / "acne_classifier.py")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("cls")
    write_demo_dataset(root / "train", num_per_class=64, resolution=32, seed=0, progress=False)
    write_demo_dataset(root / "test", num_per_class=16, resolution=32, seed=1, progress=False)
    return root


def _config(path, epochs):
    c = load_config(CONFIG + ":tiny")
    c.data.source = "folder"
    c.data.path = str(path)
    c.data.cache_dir = ""
    c.train.epochs = epochs
    return c


def test_split_per_class_is_stratified_and_disjoint():
    labels = np.repeat(np.arange(4), [10, 5, 2, 1])
    tr, va = ct.split_per_class(labels, 0.2, seed=0)
    assert len(set(tr) & set(va)) == 0 and len(tr) + len(va) == len(labels)
    assert [int(np.sum(labels[va] == k)) for k in range(4)] == [2, 1, 1, 0]


def test_small_cnn_learns_demo_severity_and_reports(demo, tmp_path):
    # 8 epochs: measured val 0.63, test 0.625 (15 epochs: 0.79, 0.67) on these 64 faces a class.
    res = ct.train_classifier(_config(demo / "train", epochs=8), str(tmp_path / "cls"))
    hist = res["history"]
    assert len(hist) == 8
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert res["best_val_acc"] >= 0.5          # 4 classes: chance is 0.25
    assert (tmp_path / "cls" / "curves.png").stat().st_size > 1000
    out = evaluate_classifier(str(tmp_path / "cls"), str(demo / "test"), str(tmp_path / "report"))
    m = out["metrics"]
    assert m["accuracy"] >= 0.45               # held-out "real" faces from another seed
    cm = np.asarray(m["confusion_matrix"])
    assert cm.shape == (4, 4) and cm.sum() == 64 and np.trace(cm) == round(m["accuracy"] * 64)
    for name in ("report.json", "report.md", "confusion_matrix.png"):
        assert (tmp_path / "report" / name).exists(), name
    # Resuming a finished run does no more epochs and keeps the history.
    again = ct.train_classifier(_config(demo / "train", epochs=8), str(tmp_path / "cls"))
    assert len(again["history"]) == 8


def test_predict_gives_probabilities(demo, tmp_path):
    ct.train_classifier(_config(demo / "train", epochs=1), str(tmp_path / "c1"))
    run = open_run(str(tmp_path / "c1"))
    x = np.random.default_rng(0).integers(0, 256, [5, 32, 32, 3]).astype(np.uint8)
    p = predict(run.model, run.variables, x)
    assert p.shape == (5, 4)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
    assert run.kind == "classifier" and run.class_names == ("healthy", "mild", "moderate", "severe")


def test_latent_classifier_sorts_generated_images(demo, tmp_path):
    import tiny_gan
    from jaxgen.classifiers.sorting import make_latent_classifier
    from jaxgen.stylegan2 import networks
    ct.train_classifier(_config(demo / "train", epochs=1), str(tmp_path / "c2"))
    run = open_run(str(tmp_path / "c2"))
    model, variables = run.model, run.variables
    G, D = networks.build(dict(tiny_gan.G_KW, c_dim=0), dict(tiny_gan.D_KW, c_dim=0))
    g_vars, _ = networks.init_variables(G, D, jax.random.key(0))   # 8 px G, classifier at 32 px
    classify = make_latent_classifier(G, model, run.resolution, run.channels, psi=0.7)
    z = jax.random.normal(jax.random.key(1), [6, G.z_dim])
    cls, conf, probs = classify(g_vars, variables, z, np.zeros([6, 0], np.float32))
    assert cls.shape == (6,) and probs.shape == (6, 4)
    assert np.all((np.asarray(conf) >= 0.25 - 1e-6) & (np.asarray(conf) <= 1))
    np.testing.assert_array_equal(np.asarray(cls), np.argmax(np.asarray(probs), -1))


def test_classifier_as_named_feature_network(demo, tmp_path):
    from jaxgen.data import load_image_folder
    from jaxgen.metrics import suite
    ct.train_classifier(_config(demo / "train", epochs=2), str(tmp_path / "c3"))
    net = suite.make_feature_net("", f"classifier:{tmp_path / 'c3'}")
    assert net.name == "classifier_c3" and not net.comparable
    real = load_image_folder(demo / "train", 32).images[:48]
    test = load_image_folder(demo / "test", 32).images[:48]
    res = suite.compute_metrics(test, real, ["fid", "kid"], net)
    same = suite.compute_metrics(real, real, ["fid"], net)
    assert abs(same["fid_classifier_c3"]) < 1e-6 < res["fid_classifier_c3"]
    assert net.fn(real[:3])["pool3"].shape[0] == 3
