"""jaxgen.metrics.privacy: hand-computed values, prdc's density/coverage, a copying
"generator" that every measure catches while fresh draws look private, and the projection
membership AUC that separates what the generator can draw from what it cannot (the tiny
generator of tests/tiny_projector.py)."""
import dataclasses

import numpy as np
import pytest
import sklearn.metrics

from jaxgen.data.folder import ImageDataset
from jaxgen.metrics import datasheet as DS
from jaxgen.metrics import privacy as P
from jaxgen.metrics.formulas import precision_recall
from jaxgen.metrics.suite import FeatureNet
from jaxgen.utils.images import to_uint8
from tiny_projector import CFG, shared_tiny

XLA_FAST_COMPILE = True   # the projection membership test compiles the tiny projection


def col(*v):
    return np.asarray(v, np.float64)[:, None]


def test_nearest_excludes_self_and_sorts():
    d, i = P.nearest(col(0, 1, 5), col(0, 1, 5), 2, exclude_self=True)
    np.testing.assert_array_equal(d, [[1, 5], [1, 4], [4, 5]])
    np.testing.assert_array_equal(i, [[1, 2], [0, 2], [1, 0]])
    with pytest.raises(ValueError, match="need more than 2"):
        P.nearest(col(0, 1), col(0, 1), 2, exclude_self=True)


def test_hand_values():
    # radii (k=1) are all 1; 0.5 lies in the balls of 0 and 1, 10 in none.
    assert P.density_coverage(col(0, 1, 2, 3), col(0.5, 10), k=1) == dict(density=1.0, coverage=0.5)
    # train NN distances 1, 1, 4: 0.2 is closer to 0 than 1 is (copy-like); 2.5 (1.5 from 1)
    # and 10 (5 from 5) are not.
    assert P.authenticity(col(0, 1, 5), col(0.2, 2.5, 10)) == pytest.approx(2 / 3)
    r = P.dcr(col(0, 10), col(1, 2, 3), col(4, 5, 6))
    assert (r["synthetic_median"], r["holdout_median"], r["ratio"]) == (2.0, 4.0, 0.5)
    assert r["synthetic_p5"] == pytest.approx(1.1)
    # 0.1: 0.1 / 0.9 = 0.11; 5: 4 / 5 = 0.8 > 0.5.
    assert P.nndr_share(col(0, 1, 10), col(0.1, 5)) == 0.5
    assert P.roc_auc([3, 2], [1, 2]) == 0.875
    assert P.membership_auc(col(0, 10), col(5, 20), col(0.1, 9.9)) == 1.0


def test_roc_auc_matches_sklearn():
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 20, 50), rng.integers(0, 25, 70)      # many ties
    want = sklearn.metrics.roc_auc_score(np.r_[np.ones(50), np.zeros(70)], np.r_[pos, neg])
    assert P.roc_auc(pos, neg) == pytest.approx(want, abs=1e-12)


def test_density_coverage_and_precision_recall_match_prdc():
    prdc = pytest.importorskip("prdc")
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(300, 8)), rng.normal(0.3, 1.2, size=(250, 8))
    want = prdc.compute_prdc(real_features=real, fake_features=fake, nearest_k=5)
    got = P.density_coverage(real, fake, k=5)
    assert got["density"] == pytest.approx(want["density"], rel=1e-12)
    assert got["coverage"] == pytest.approx(want["coverage"], rel=1e-12)
    want3 = prdc.compute_prdc(real_features=real, fake_features=fake, nearest_k=3)
    prec, rec = precision_recall(real, fake, k=3)
    assert (prec, rec) == pytest.approx((want3["precision"], want3["recall"]), abs=1e-12)


def test_a_copying_generator_fails_every_measure_and_fresh_draws_pass():
    rng = np.random.default_rng(2)
    train, holdout, fresh = (rng.normal(size=(300, 32)) for _ in range(3))
    copies = train + rng.normal(0, 0.01, size=train.shape)      # lightly perturbed training images
    rep = P.privacy_report(train, holdout, copies)
    assert rep["synthetic"]["authenticity"] < 0.05
    assert rep["synthetic"]["nndr_above_0_5"] < 0.05
    assert rep["dcr"]["ratio"] < 0.05
    assert rep["membership_auc"] > 0.99
    assert rep["holdout_as_synthetic"]["authenticity"] > 0.4
    assert rep["holdout_as_synthetic"]["nndr_above_0_5"] > 0.9
    ok = P.privacy_report(train, holdout, fresh)
    assert ok["synthetic"]["authenticity"] > 0.4 and 0.8 < ok["dcr"]["ratio"] < 1.25
    assert 0.4 < ok["membership_auc"] < 0.6
    dc = P.density_coverage(train, fresh)
    assert 0.7 < dc["density"] < 1.3 and dc["coverage"] > 0.8


@pytest.fixture(scope="module")
def tiny():
    return shared_tiny()


def test_projection_membership_auc(tiny):
    run = tiny["run"]
    g_imgs = tiny["targets"][2:5]
    noise = np.random.default_rng(3).uniform(-1, 1, [3, 8, 8, 3]).astype(np.float32)
    pixels_only = dataclasses.replace(CFG, d_weight=0.0)                   # the membership default
    same = P.projection_membership(run, g_imgs[:2], g_imgs[:2], 30, cfg=pixels_only)
    assert same["auc"] == 0.5 and same["train_mse"] == same["holdout_mse"]   # same images, same draws

    def ds(x):
        return ImageDataset(to_uint8(x), np.zeros(len(x), np.int32), ["all"], [f"{i}.png" for i in range(len(x))])
    colours = FeatureNet("colours", False, lambda x: {"pool3": x.mean(axis=(1, 2)).astype(np.float32) / 255})
    sheet = DS.compute(ds(g_imgs), ds(g_imgs), ds(noise), colours, k_pr=1, k_dc=1,
                       projection=dict(run=run, steps=60, config=pixels_only))
    pm = sheet["privacy"]["projection_membership"]
    print(f"G images MSE {pm['train_mse']}, noise images MSE {pm['holdout_mse']}")
    assert pm["auc"] == 1.0 and pm["images"] == dict(train=3, holdout=3)   # G's own images: all better
    assert same["features"] == pm["features"] == ["pixel"]
    # uniform noise has variance 1/3 about its mean, and G cannot draw it (measured 0.33-0.36);
    # G's own images: 0.04, 0.09, 0.11
    assert min(pm["holdout_mse"]) > 0.25 > max(pm["train_mse"])
    md = DS.markdown(sheet, {})
    assert "| membership AUC (projection, 60 steps: training images reconstruct better) | 1.000 |" in md
