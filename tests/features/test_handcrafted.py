"""Handcrafted features against scikit-image, and XGBoost on them (jaxgen.features)."""
import json

import numpy as np
import pytest
from PIL import Image
from skimage.feature import hog as sk_hog
from skimage.feature import local_binary_pattern
from skimage.filters import sobel as sk_sobel

from jaxgen.data.demo_faces import render_face
from jaxgen.features import handcrafted as hc
from jaxgen.features import xgb as fx


def _structured(size=32):
    yy, xx = np.mgrid[:size, :size]
    flat = np.full((size, size), 100, np.uint8)
    flat[8:20, 5:25] = 180                      # flat regions: ties between neighbours
    flat[:, size - 4:] = 37
    ramp = ((xx + yy) * 4 % 256).astype(np.uint8)
    checker = (((xx + yy) % 2) * 255).astype(np.uint8)
    disk = np.where((yy - 15.3) ** 2 + (xx - 12.7) ** 2 < 80, 220, 30).astype(np.uint8)
    face = np.asarray(Image.fromarray(render_face(np.random.default_rng(3), 2, size)).convert("L"))
    low = np.random.default_rng(1).integers(0, 3, (size, size)).astype(np.uint8)
    return [flat, ramp, checker, disk, face, low, np.zeros((size, size), np.uint8)]


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    rand = [rng.integers(0, 256, (32, 32), dtype=np.uint8) for _ in range(3)]
    return np.stack(rand + _structured(32))


def test_to_gray_matches_pil_luma():
    rgb = np.random.default_rng(2).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    rgb[0, 0, 0] = 255
    ref = np.stack([np.asarray(Image.fromarray(x).convert("L")) for x in rgb])
    assert np.array_equal(hc.to_gray(rgb), ref)
    assert hc.to_gray(rgb[..., :1]).shape == (3, 16, 16)
    with pytest.raises(TypeError, match="uint8"):
        hc.to_gray(rgb.astype(np.float32))


@pytest.mark.parametrize("P,R", [(8, 1), (16, 2), (8, 1.5)])
def test_lbp_codes_equal_skimage(images, P, R):
    ours = hc.lbp_codes(images, P, R)
    ref = np.stack([local_binary_pattern(x, P, R, method="uniform") for x in images])
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() == 0
    hist = hc.lbp_histogram(images, P, R)
    ref_hist = np.stack([np.histogram(r, bins=P + 2, range=(0, P + 2))[0] / r.size for r in ref])
    assert hist.shape == (len(images), P + 2)
    np.testing.assert_allclose(hist.sum(1), 1.0, atol=1e-12)
    assert np.abs(hist - ref_hist).max() < 1e-15


@pytest.mark.parametrize("orient,ppc,cpb,norm", [
    (9, (8, 8), (2, 2), "L2-Hys"), (9, (4, 4), (3, 3), "L2-Hys"),
    (7, (5, 3), (2, 3), "L2-Hys"), (9, (8, 8), (2, 2), "L1"), (6, (4, 4), (1, 1), "L2")])
def test_hog_equals_skimage(images, orient, ppc, cpb, norm):
    ours = hc.hog_features(images, orient, ppc, cpb, norm)
    ref = np.stack([sk_hog(x, orient, ppc, cpb, norm) for x in images])
    assert ours.shape == ref.shape
    # skimage sums cells in float32; we reproduce that, so the values agree bit for bit
    # (summing in float64 instead would differ by ~2e-8).
    assert np.abs(ours - ref).max() <= 1e-12
    assert np.abs(ours).max() > 0.05


def test_hog_too_small_image_is_an_error():
    with pytest.raises(ValueError, match="too small"):
        hc.hog_features(np.zeros((1, 8, 8), np.uint8), pixels_per_cell=(8, 8),
                        cells_per_block=(2, 2))


def test_sobel_magnitude_and_histogram_match_skimage(images):
    ours = hc.sobel_magnitude(images)
    ref = np.stack([sk_sobel(x) for x in images])
    assert np.abs(ours - ref).max() < 1e-12
    assert ref.max() > 0.3
    hist = hc.sobel_histogram(images, bins=16)
    ref_hist = np.stack([np.histogram(r, bins=16, range=(0, 1))[0] / r.size for r in ref])
    assert np.array_equal(hist, ref_hist)
    np.testing.assert_allclose(hist.sum(1), 1.0, atol=1e-12)


@pytest.mark.parametrize("bins", [32, 10, 7])
def test_intensity_histogram_is_normalised_np_histogram(images, bins):
    hist = hc.intensity_histogram(images, bins)
    ref = np.stack([np.histogram(x, bins=bins, range=(0, 256))[0] / x.size for x in images])
    np.testing.assert_allclose(hist.sum(1), 1.0, atol=1e-12)
    assert np.array_equal(hist, ref)


def test_extract_features_blocks_and_layout(images):
    params = dict(hog=dict(pixels_per_cell=(8, 8), cells_per_block=(2, 2)), sobel=dict(bins=8))
    feats = hc.extract_features(images, **params)
    blocks = hc.feature_blocks(32, 32, **params)
    assert [b.name for b in blocks] == ["lbp", "hog", "sobel", "hist"]
    assert [b.size for b in blocks] == [10, 3 * 3 * 2 * 2 * 9, 8, 32]
    assert feats.shape == (len(images), blocks[-1].stop) and feats.dtype == np.float32
    parts = dict(lbp=hc.lbp_histogram(images), hog=hc.hog_features(images),
                 sobel=hc.sobel_histogram(images, 8), hist=hc.intensity_histogram(images))
    for b in blocks:
        np.testing.assert_array_equal(feats[:, b.start:b.stop], parts[b.name].astype(np.float32))
    assert len(hc.feature_names(32, **params)) == feats.shape[1]
    # chunking, channel layouts and block order
    np.testing.assert_array_equal(hc.extract_features(images, batch_size=3, **params), feats)
    np.testing.assert_array_equal(hc.extract_features(images[..., None], **params), feats)
    rgb = np.repeat(images[..., None], 3, axis=-1)
    np.testing.assert_array_equal(hc.extract_features(rgb, **params), feats)
    only = hc.extract_features(images, which=("hist", "lbp"))
    np.testing.assert_array_equal(only, np.concatenate([parts["hist"], parts["lbp"]], 1)
                                  .astype(np.float32))
    with pytest.raises(ValueError):
        hc.extract_features(images, which=("lbp", "sift"))
    with pytest.raises(ValueError, match="unknown hog"):
        hc.extract_features(images, hog=dict(cell=4))


def _stripes(n, vertical, rng, size=32):
    """Noisy stripe images: horizontal (class 0) or vertical (class 1), random phase,
    period, contrast and brightness."""
    out = []
    for _ in range(n):
        yy, xx = np.mgrid[:size, :size]
        coord = xx if vertical else yy
        period, phase = rng.uniform(4, 8), rng.uniform(0, 2 * np.pi)
        img = (rng.uniform(90, 160) + rng.uniform(30, 70) * np.sin(2 * np.pi * coord / period + phase)
               + rng.normal(0, 20, (size, size)))
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(out)


def test_xgb_separates_two_texture_classes():
    rng = np.random.default_rng(0)
    x = np.concatenate([_stripes(40, False, rng), _stripes(40, True, rng)])
    y = np.repeat([0, 1], 40)
    perm = rng.permutation(80)
    x, y = x[perm], y[perm]
    feats = hc.extract_features(x)
    model = fx.train_xgb(feats[:40], y[:40], 2, dict(n_estimators=60), seed=0)
    rep = fx.evaluate_xgb(model, feats[40:], y[40:], ["horizontal", "vertical"])
    pred = model.predict(feats[40:])
    assert rep["accuracy"] == pytest.approx(np.mean(pred == y[40:]))
    assert rep["accuracy"] >= 0.9
    cm = np.array(rep["confusion_matrix"])
    assert cm.shape == (2, 2) and cm.sum() == 40 and np.trace(cm) == round(rep["accuracy"] * 40)
    imp = fx.block_importance(model, hc.feature_blocks(32))
    assert sum(imp.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no training examples"):
        fx.train_xgb(feats[:10], np.zeros(10, np.int64), 2)


def _write_folder(root, arrays_by_class):
    for name, arrays in arrays_by_class.items():
        (root / name).mkdir(parents=True)
        for i, a in enumerate(arrays):
            Image.fromarray(a).save(root / name / f"{i:03d}.png")


def test_synthetic_to_real_report(tmp_path):
    rng = np.random.default_rng(1)
    _write_folder(tmp_path / "syn", {"horiz": _stripes(20, False, rng),
                                     "vert": _stripes(20, True, rng)})
    _write_folder(tmp_path / "real", {"horiz": _stripes(12, False, rng),
                                      "vert": _stripes(8, True, rng)})
    rep = fx.synthetic_to_real_xgb(tmp_path / "syn", tmp_path / "real", 32, cache_dir=None,
                                   xgb_params=dict(n_estimators=50), out_dir=tmp_path / "rep",
                                   verbose=False)
    cm = np.array(rep["confusion_matrix"])
    assert cm.sum() == rep["num_test"] == 20 and rep["num_train"] == 40
    assert cm.sum(axis=1).tolist() == [12, 8]
    assert rep["accuracy"] == pytest.approx(np.trace(cm) / 20) and rep["accuracy"] >= 0.85
    assert 0.0 <= rep["macro"]["f1"] <= 1.0 and rep["class_names"] == ["horiz", "vert"]
    assert rep["feature_dim"] == rep["features"][-1]["stop"]
    assert (tmp_path / "rep" / "confusion_matrix.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert saved["confusion_matrix"] == rep["confusion_matrix"]
    _write_folder(tmp_path / "odd", {"other": _stripes(2, True, rng)})
    with pytest.raises(ValueError, match="not among the training classes"):
        fx.synthetic_to_real_xgb(tmp_path / "syn", tmp_path / "odd", 32, cache_dir=None,
                                 verbose=False)
