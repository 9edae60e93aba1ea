"""jaxgen.metrics.task_features: fidelity in a real-face classifier's penultimate features sees
0.7 px of Gaussian blur on real faces (random-Inception's figures on the same pair beside it);
the penultimate features are the logits Dense's input; dlib's entry carries a caveat instead of
figures on the drawn demo faces; the datasheet gets the section (json and md)."""
import pathlib

import numpy as np
import pytest
from scipy import ndimage

from jaxgen.classifiers import train as ct
from jaxgen.classifiers.evaluate import model_input
from jaxgen.config import load_config
from jaxgen.data.demo_faces import write_demo_dataset
from jaxgen.data.folder import ImageDataset, load_image_folder
from jaxgen.errors import UserError
from jaxgen.identity.pixel_embedder import PixelEmbedder
from jaxgen.metrics import datasheet as DS
from jaxgen.metrics import task_features as TF
from jaxgen.metrics.suite import FeatureNet, extract, make_feature_net
from jaxgen.runs import open_run
from jaxgen.workflows.datasheet import datasheet_for_folders

CONFIG = str(pathlib.Path(__file__).resolve().parents[2] / "configs" / "acne_classifier.py") + ":tiny"
PER_CLASS = 48   # x 4 classes = 192 images a set
WIDTH = 8        # small_cnn features D = 8 * WIDTH = 64 < 192 images a set; see test_blur_...
BLUR_SIGMA = 0.7
# The demo renderer's version 2: lesions of 1-2 px at 32 px, which 0.7 px of blur wipes out,
# the loss the measure must see (version 3 draws lesions that survive such blur by design).
RENDERER = 2


def _blur(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, C] -> the same, Gaussian-blurred by BLUR_SIGMA px in H and W."""
    out = ndimage.gaussian_filter(images.astype(np.float64), (0, BLUR_SIGMA, BLUR_SIGMA, 0))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """32 px demo faces (renderer version 2): a real training set (seed 0), a real holdout
    (seed 1), the holdout blurred, and the tiny small_cnn (width 8, 6 epochs) trained on the
    training set."""
    root = tmp_path_factory.mktemp("task")
    write_demo_dataset(root / "train", PER_CLASS, 32, 0, progress=False, version=RENDERER)
    write_demo_dataset(root / "holdout", PER_CLASS, 32, 1, progress=False, version=RENDERER)
    c = load_config(CONFIG, ["data.source=folder", f"data.path={root / 'train'}", "data.cache_dir=",
                             "train.epochs=6", f"model.kwargs.width={WIDTH}"])
    ct.train_classifier(c, str(root / "cls_real"))
    train, hold = (load_image_folder(root / n, 32, 3, cache_dir=None) for n in ("train", "holdout"))
    blurred = ImageDataset(_blur(hold.images), hold.labels, hold.class_names, list(hold.paths))
    return dict(root=root, run=open_run(str(root / "cls_real"), kinds=("classifier",)), train=train,
                hold=hold, blurred=blurred)


def test_penultimate_features_are_the_logits_dense_input(faces):
    run = faces["run"]
    x = faces["hold"].images[:10]
    feats = TF.classifier_features(run, x)
    assert feats.shape == (10, 8 * WIDTH) and feats.dtype == np.float32
    head = run.variables["params"]["predictions"]
    logits = np.asarray(run.model.apply(run.variables, model_input(x), train=False))
    np.testing.assert_allclose(feats @ np.asarray(head["kernel"]) + np.asarray(head["bias"]), logits,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(TF.classifier_features(run, x, batch=3), feats, rtol=1e-5, atol=1e-6)
    small = TF.classifier_features(run, faces["hold"].images[:4, ::2, ::2])   # 16 px: resized to 32
    assert small.shape == (4, 8 * WIDTH) and np.all(np.isfinite(small))
    with pytest.raises(ValueError, match="uint8 images"):
        TF.classifier_features(run, x.astype(np.float32))
    with pytest.raises(ValueError, match="equal D"):
        TF.task_fidelity(feats, feats[:, :5])


def test_blur_scores_clearly_worse_in_classifier_space(faces):
    """FD of the real training faces against the sharp holdout and against the same holdout
    blurred by 0.7 px, in the classifier's penultimate features and in random Inception's.
    Measured with this module's settings: classifier FD 0.129 -> 1.012 (7.8x), random Inception
    0.362 -> 2.321 (6.4x). Precision/recall (k=3) hardly move in classifier space (recall 0.901 ->
    0.906 here; 0.91 -> 0.70..0.84 with classifier seeds 1-3), so only the FD is asserted. With
    the tiny config's width 32 (D = 256 > 192 images a set) the FD was at its sampling noise (the
    ratio ranged 0.53 - 4.9 over classifier seeds): hence width 8 here, and the sheet's caveat."""
    run, train, hold, blurred = faces["run"], faces["train"], faces["hold"], faces["blurred"]
    f_train, f_hold, f_blur = (TF.classifier_features(run, d.images) for d in (train, hold, blurred))
    sharp = TF.task_fidelity(f_train, f_hold)
    blur = TF.task_fidelity(f_train, f_blur, holdout_feats=f_hold)
    net = make_feature_net("", "random_inception")
    g_train, g_hold, g_blur = (extract(net, [d.images])["pool3"] for d in (train, hold, blurred))
    inc_sharp, inc_blur = TF.task_fidelity(g_train, g_hold), TF.task_fidelity(g_train, g_blur)
    ratio, inc_ratio = blur["fd"] / sharp["fd"], inc_blur["fd"] / inc_sharp["fd"]
    msg = (f"classifier space: FD sharp {sharp['fd']:.4f} blurred {blur['fd']:.4f} (x{ratio:.2f}), "
           f"precision {sharp['precision']:.3f} -> {blur['precision']:.3f}, recall {sharp['recall']:.3f} -> "
           f"{blur['recall']:.3f}; random Inception: FD sharp {inc_sharp['fd']:.4f} blurred "
           f"{inc_blur['fd']:.4f} (x{inc_ratio:.2f}), precision {inc_sharp['precision']:.3f} -> "
           f"{inc_blur['precision']:.3f}, recall {inc_sharp['recall']:.3f} -> {inc_blur['recall']:.3f}")
    print(msg)
    assert ratio >= 2.0, msg
    assert blur["holdout_as_synthetic"] == sharp and blur["fd_vs_holdout"] == pytest.approx(ratio), msg
    assert np.isfinite(inc_ratio) and sharp["n_real"] == sharp["n_fake"] == 4 * PER_CLASS, msg


def _subset(ds: ImageDataset, n: int) -> ImageDataset:
    """The first n images of every class of ds."""
    keep = np.concatenate([np.flatnonzero(np.asarray(ds.labels) == k)[:n] for k in range(len(ds.class_names))])
    return ImageDataset(ds.images[keep], np.asarray(ds.labels)[keep], ds.class_names, [ds.paths[i] for i in keep])


def test_datasheet_section_and_dlib_caveat_on_drawn_faces(faces):
    """compute(..., feature_classifier=run): the task_features section holds task_fidelity's
    numbers for the three sets; dlib (real, offline) finds too few of the 32 px drawn faces and
    the entry says so instead of scoring; the markdown shows both."""
    train, hold, syn = (_subset(faces[k], 4) for k in ("train", "hold", "blurred"))
    coarse = FeatureNet("pixels_4x4", False,   # 48-d: the sheet's own FIDs stay cheap
                        lambda x: {"pool3": x[:, ::8, ::8].reshape(len(x), -1).astype(np.float32) / 255})
    sheet = DS.compute(syn, train, hold, coarse, None, feature_classifier=faces["run"])
    sheet.pop("_per_image")
    task = sheet["task_features"]
    f = [TF.classifier_features(faces["run"], d.images) for d in (train, syn, hold)]
    expect = TF.task_fidelity(*f)
    c = task["classifier"]
    assert c["fd"] == pytest.approx(expect["fd"]) and c["recall"] == expect["recall"]
    assert c["feature_dim"] == 8 * WIDTH and c["model"] == "small_cnn" and c["n_fake"] == 16
    assert "fewer images than 2 x" in c["caveat"]           # 16 images vs 64-d features
    d = task["dlib"]
    assert d["available"] and d["images"] == {"train": 16, "synthetic": 16, "holdout": 16}
    assert min(d["embedded"].values()) < TF.MIN_DLIB_EMBEDDED and "fd" not in d
    assert "not face photos it can read" in d["caveat"]
    pix = PixelEmbedder(16, 0.3)   # the figures path with an embedder that embeds everything
    scored = TF.dlib_fidelity(train.images, syn.images, hold.images, embedder=pix)
    e = [pix.embed(d.images)[0] for d in (train, syn, hold)]
    assert scored["embedded"] == {"train": 16, "synthetic": 16, "holdout": 16}
    assert scored["fd"] == pytest.approx(TF.task_fidelity(*e)["fd"]) and scored["fd_vs_holdout"] > 0
    md = DS.markdown(sheet, {})
    assert "## Fidelity in task features" in md and f"| classifier | Frechet distance | {c['fd']:.3f} |" in md
    assert "**Caveat (dlib)**" in md


def test_a_bad_feature_classifier_is_refused_before_the_output_exists(faces, tmp_path):
    root, out = faces["root"], tmp_path / "sheet"
    with pytest.raises(UserError, match="nope does not exist"):
        datasheet_for_folders(str(root / "holdout"), str(root / "train"), str(root / "holdout"), str(out),
                              feature_net="random_inception", identity_model="none",
                              feature_classifier=str(tmp_path / "nope"))
    assert not out.exists()
