"""The pixel near-copy check calibrated on the data (issue 28, item 6): on a low-variation set
where most fresh real images lie within the fixed 0.3 of a training image, fresh draws pass while
exact copies and 1-px shifts of training images are still refused; generate records the
calibration in metadata.jsonl and the datasheet."""
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from jaxgen.identity.search import IdentityCheck, make_embedder, nearest_identity
from jaxgen.identity.pixel_embedder import FIXED_PIXEL_THRESHOLD, PixelEmbedder, pixel_features
from jaxgen.metrics.suite import FeatureNet
from jaxgen.workflows import generate

RES = 32


def _face(rng: np.random.Generator) -> np.ndarray:
    """One smooth grayscale face-like image uint8 [RES, RES, 1]: a bright oval, two eyes and a
    mouth, each a little moved, scaled and shaded per image (a low-variation set)."""
    yy, xx = np.mgrid[0:RES, 0:RES].astype(np.float32) / (RES - 1) * 2 - 1
    cx, cy = rng.normal(0, 0.08, 2)
    sx, sy = 0.55 + rng.normal(0, 0.06), 0.7 + rng.normal(0, 0.06)
    img = 0.25 + 0.5 * np.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2) ** 2)
    for ex in (-0.25, 0.25):
        img -= 0.3 * np.exp(-((xx - cx - ex - rng.normal(0, 0.04)) ** 2 + (yy - cy + 0.2) ** 2) / 0.01)
    img -= 0.2 * np.exp(-((xx - cx) ** 2 / 0.04 + (yy - cy - 0.4 - rng.normal(0, 0.06)) ** 2 / 0.005))
    shade = sum(rng.normal() * np.cos(k * np.pi * xx / 2 + rng.uniform(0, 6)) * np.cos(m * np.pi * yy / 2 +
                rng.uniform(0, 6)) for k in (1, 2) for m in (1, 2))
    img = img * (1 + rng.normal(0, 0.05)) + 0.06 * shade + rng.normal(0, 0.01, img.shape)
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)[..., None]


def _faces(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([_face(rng) for _ in range(n)])


def _shifted(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """img moved by (dy, dx) px, the uncovered edge repeated (no wrap-around)."""
    rows = np.clip(np.arange(RES) - dy, 0, RES - 1)
    cols = np.clip(np.arange(RES) - dx, 0, RES - 1)
    return img[rows][:, cols]


def _plain(images: np.ndarray) -> np.ndarray:
    return np.asarray(pixel_features(images.astype(np.float32), 16)[0])


@pytest.fixture(scope="module")
def sets():
    return _faces(240, 0), _faces(120, 1)


def test_calibrated_threshold_passes_fresh_draws_and_refuses_copies_and_shifts(sets):
    train, fresh = sets
    d_fixed, _ = nearest_identity(_plain(fresh), _plain(train))
    assert np.mean(d_fixed <= FIXED_PIXEL_THRESHOLD) > 0.5      # the fixed check refused most fresh faces
    check = IdentityCheck(make_embedder("pixel"), train, [f"t{i}.png" for i in range(len(train))])
    cal = check.calibration
    assert cal["method"] == "calibrated" and cal["percentile"] == 1.0 and cal["sample"] == len(train)
    assert 0.05 <= check.threshold == cal["threshold"] < FIXED_PIXEL_THRESHOLD
    assert cal["quantiles"]["p1"] <= cal["quantiles"]["p50"] and cal["share_within_fixed"] > 0.5
    assert check.check(fresh)["passed"].mean() >= 0.9            # fresh draws of the same faces pass

    copies = train[:30]
    moves = [(1, 0), (0, 1), (-1, 0), (0, -1), (1, 1), (-1, 2)]
    shifts = np.stack([_shifted(im, *moves[i % len(moves)]) for i, im in enumerate(train[:30])])
    for planted in (copies, shifts):
        r = check.check(planted)
        assert not r["passed"].any()                              # every copy and shift is refused ...
        np.testing.assert_array_equal(r["index"], np.arange(30))  # ... as a copy of its own original
        assert r["distance"].max() < 0.05
    plain_shift = np.linalg.norm(_plain(shifts) - _plain(train[:30]), axis=1)
    assert np.mean(plain_shift > check.threshold) > 0.5           # plain pixels would let them through

    rec = check.record(check.check(fresh[:1]), 0)
    assert rec["threshold"] == check.threshold and rec["calibration"]["threshold"] == check.threshold


def test_given_threshold_overrides_and_tiny_sets_fall_back(sets):
    train, _ = sets
    given = IdentityCheck(make_embedder("pixel", 0.3), train[:20], [str(i) for i in range(20)])
    assert given.threshold == 0.3 and given.calibration is None and PixelEmbedder().threshold == 0.3
    one = IdentityCheck(make_embedder("pixel"), train[:1], ["only.png"])
    assert one.threshold == FIXED_PIXEL_THRESHOLD and one.calibration["method"].startswith("fixed")


class FreshFaces:
    """A conditional 'generator' that draws fresh faces of the real distribution from its latents;
    a latent with z[0] > 1.6 returns a training face, with z[0] < -1.6 one moved by 1 px."""

    num_classes, class_names, z_dim, resolution, channels, path = 2, ("a", "b"), 4, RES, 1, "runs/fresh"

    def __init__(self, train: np.ndarray):
        self.train = train

    def generate(self, z, labels, psi=1.0):
        out = []
        for v in np.asarray(z):
            img = _face(np.random.default_rng(np.abs(v * 1e6).astype(np.int64)))
            if abs(v[0]) > 1.6:
                t = self.train[int(abs(v[1]) * 1000) % len(self.train)]
                img = t if v[0] > 0 else _shifted(t, 1, 0)
            out.append(img.astype(np.float32) / 127.5 - 1)
        return np.stack(out)


def _folder(root: pathlib.Path, images: np.ndarray) -> str:
    for k, name in enumerate(FreshFaces.class_names):
        (root / name).mkdir(parents=True)
        for i, im in enumerate(images[k::2]):
            Image.fromarray(im[..., 0]).save(root / name / f"r{i:03d}.png")
    return str(root)


def test_generate_calibrates_the_pixel_check_and_records_it(sets, tmp_path, monkeypatch):
    train, fresh = sets
    real, hold = _folder(tmp_path / "real", train), _folder(tmp_path / "hold", fresh)
    g = FreshFaces(np.stack([np.asarray(Image.open(p))[..., None] for p in sorted(
        pathlib.Path(real).rglob("*.png"))]))
    monkeypatch.setattr(generate, "open_run", lambda *a, **k: g)
    monkeypatch.setattr(generate, "make_feature_net", lambda *a: FeatureNet(
        "pixels_for_test", False, lambda x: {"pool3": x.reshape(len(x), -1)[:, ::9] / 255.0}))
    out = tmp_path / "syn"
    r = generate.export_dataset("runs/fresh", str(out), num_per_class=30, batch=16, real=real, holdout=hold,
                                identity="pixel")
    z0 = {k: np.array([np.random.default_rng([0, k, i]).standard_normal(4)[0] for i in range(200)])
          for k in range(2)}
    rows = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    for k, name in enumerate(FreshFaces.class_names):
        ids = sorted(row["latent_seed"][2] for row in rows if row["class_name"] == name)
        tried = np.arange(ids[-1] + 1)
        planted = tried[np.abs(z0[k][tried]) > 1.6]
        assert len(ids) == 30 and planted.size and not set(planted) & set(ids)   # copies, shifts refused
        assert r["refused"][name] <= planted.size + 3                           # fresh faces pass
    ident = rows[0]["identity"]
    cal = ident["calibration"]
    assert cal["method"] == "calibrated" and ident["threshold"] == cal["threshold"] < FIXED_PIXEL_THRESHOLD
    assert cal["sample"] == len(train) and set(cal["quantiles"]) == {"min", "p1", "p5", "p25", "p50"}
    sheet = json.loads((out / "datasheet.json").read_text())
    assert sheet["identity"]["calibration"]["threshold"] == ident["threshold"]
    assert "threshold calibrated on the training faces" in (out / "datasheet.md").read_text()
