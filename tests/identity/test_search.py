"""Identity embedders and the de-identification report (jaxgen.identity.search).

The faces are the procedural demo faces (jaxgen.data.demo_faces) at 128 px.
dlib's HOG detector finds most of them (7 of the 8 used here; face 3 needs the
whole-image fallback). dlib's descriptor sees these cartoons as rather similar
people: the 8 training faces are 0.35-0.61 apart (one pair above 0.6), and 8
new faces are 0.35-0.55 from their nearest training face, all *below* dlib's
0.6 same-person threshold. So on drawn faces dlib reliably flags near-copies
(0.0-0.27 here, always closer than any different face) but would also reject
genuinely different drawn faces; the tests assert both, as measured.
"""
import numpy as np
import pytest

from jaxgen.data.demo_faces import render_face
from jaxgen.identity.dlib_embedder import DlibEmbedder
from jaxgen.identity.embedder_interface import IdentityEmbedder
from jaxgen.identity.search import deidentification_report, nearest_identity
from jaxgen.identity.pixel_embedder import PixelEmbedder

RES = 128
N_TRAIN = 8
KINDS = ("noise", "bright", "shift")


def _face(i, seed=7, res=RES):
    return render_face(np.random.default_rng([seed, 0, i]), 0, res)


def _near_copy(img, kind, rng):
    """A planted copy: same face, small pixel noise / 4% brighter / shifted 1 px down, 2 right."""
    x = img.astype(np.float32)
    if kind == "noise":
        x = x + rng.normal(0, 2.0, x.shape)
    elif kind == "bright":
        x = x * 1.04
    elif kind == "shift":
        x = np.roll(x, (1, 2), (0, 1))
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def faces():
    train = np.stack([_face(i) for i in range(N_TRAIN)])
    rng = np.random.default_rng(1)
    copies = np.stack([_near_copy(train[i], k, rng) for i in range(N_TRAIN) for k in KINDS])
    return train, copies


@pytest.fixture(scope="module")
def dlib_fb():
    pytest.importorskip("dlib")
    return DlibEmbedder(detect_fallback="whole")


@pytest.fixture(scope="module")
def dlib_train(dlib_fb, faces):
    return dlib_fb.embed_detailed(faces[0])


def _pairwise(e):
    return np.linalg.norm(e[:, None] - e[None], axis=-1)


def test_protocol_and_attributes(dlib_fb):
    for emb in (dlib_fb, PixelEmbedder()):
        assert isinstance(emb, IdentityEmbedder)
    assert (dlib_fb.dim, dlib_fb.threshold) == (128, 0.6)
    assert PixelEmbedder(size=8).dim == 8 * 8 * 3
    assert "not_identity" in PixelEmbedder().name


def test_dlib_detects_demo_faces_or_says_it_fell_back(dlib_train):
    r = dlib_train
    assert r.embeddings.shape == (N_TRAIN, 128) and r.embeddings.dtype == np.float32
    assert r.ok.all()
    assert r.status == ["detected"] * 3 + ["whole_image_fallback"] + ["detected"] * 4
    # dlib descriptors have norm ~0.3-0.5; a zero row would mean "not embedded".
    assert np.all(np.linalg.norm(r.embeddings, axis=1) > 0.2)


def test_dlib_near_copy_rejected_different_face_farther(dlib_fb, dlib_train, faces):
    train, copies = faces
    rep = deidentification_report(copies, train, dlib_fb)
    own = np.repeat(np.arange(N_TRAIN), len(KINDS))
    # Every planted near-copy finds its own original, closer than dlib's threshold.
    np.testing.assert_array_equal(rep["index"], own)
    assert rep["num_rejected"] == len(copies) and rep["num_passed"] == 0
    assert not rep["passed"].any() and rep["not_embedded"] == []
    assert rep["distance"].max() < 0.3
    # The copy of face 3 is not detected either: its status says so.
    assert [s for s in rep["status"] if s != "detected"] == ["whole_image_fallback"] * 3
    # Different faces are farther from each other than any near-copy is from its original.
    d = _pairwise(dlib_train.embeddings)
    off = d[~np.eye(N_TRAIN, dtype=bool)]
    assert off.min() > rep["distance"].max() + 0.05
    # Measured (dlib-bin 20.0.1.post1): copies of face 0 (bright, shift) and two face pairs.
    np.testing.assert_allclose(rep["distance"][1:3], [0.056, 0.070], atol=0.02)
    np.testing.assert_allclose([d[0, 1], d[1, 6]], [0.514, 0.611], atol=0.02)
    # Honest: on these cartoons most different-face pairs are below 0.6 too.
    assert np.sum(off > dlib_fb.threshold) / 2 == 1  # only faces 1 and 6
    # New drawn faces: farther than every near-copy, yet all under 0.6 (rejected).
    new = deidentification_report(np.stack([_face(i) for i in range(100, 108)]), train, dlib_fb)
    assert new["distance"].min() > rep["distance"].max() + 0.05
    np.testing.assert_allclose([new["distance"].min(), new["distance"].max()], [0.352, 0.554],
                               atol=0.02)
    assert new["num_passed"] == 0 and new["num_not_embedded"] == 0


def test_dlib_unembeddable_images_are_reported(faces):
    pytest.importorskip("dlib")
    grey = np.full((1, RES, RES, 3), 128, np.uint8)
    train = faces[0][:2]
    strict = DlibEmbedder(detect_fallback=None)
    cands = np.concatenate([train[:1], grey])
    rep = deidentification_report(cands, train, strict)
    assert rep["not_embedded"] == [{"index": 1, "reason": "no_face_detected"}]
    assert rep["num_not_embedded"] == 1 and not rep["passed"][1] and not rep["all_passed"]
    assert np.isnan(rep["distance"][1]) and rep["index"][1] == -1
    assert rep["index"][0] == 0 and rep["distance"][0] == 0.0 and not rep["passed"][0]
    emb, ok = strict.embed(grey)
    assert not ok[0] and not emb.any()
    # With the fallback the grey image is embedded, and the status says how.
    r = DlibEmbedder(detect_fallback="whole").embed_detailed(grey)
    assert r.ok[0] and r.status == ["whole_image_fallback"]
    # References that cannot be embedded are listed; none at all is an error.
    rep = deidentification_report(train, np.concatenate([grey, train]), strict)
    assert rep["references_not_embedded"] == [{"index": 0, "reason": "no_face_detected"}]
    np.testing.assert_array_equal(rep["index"], [1, 2])
    with pytest.raises(ValueError, match="none of the 1 reference"):
        deidentification_report(train, grey, strict)


def test_dlib_deterministic_and_small_images_upscaled(dlib_fb, dlib_train, faces):
    again = dlib_fb.embed_detailed(faces[0][:3])
    np.testing.assert_array_equal(again.embeddings, dlib_train.embeddings[:3])
    small = np.stack([_face(i, res=64) for i in range(3)])
    r64 = dlib_fb.embed_detailed(small)  # upscaled to 80 px before detection
    assert r64.ok.all() and r64.status == ["detected"] * 3
    # Same faces at 64 px and 128 px: same identity by dlib's standard.
    d = np.linalg.norm(r64.embeddings - dlib_train.embeddings[:3], axis=1)
    assert d.max() < 0.35  # measured 0.29, 0.19, 0.22
    with pytest.raises(ValueError, match="uint8"):
        dlib_fb.embed(small.astype(np.float32))


def test_pixel_embedder_near_copies_and_flat_images(faces):
    train, copies = faces
    px = PixelEmbedder()
    e1, ok1 = px.embed(train)
    e2, _ = px.embed(train)
    np.testing.assert_array_equal(e1, e2)
    assert e1.shape == (N_TRAIN, 768) and ok1.all()
    np.testing.assert_allclose(np.linalg.norm(e1, axis=1), 1.0, atol=1e-5)
    rep = deidentification_report(copies, train, px)
    np.testing.assert_array_equal(rep["index"], np.repeat(np.arange(N_TRAIN), len(KINDS)))
    dist = rep["distance"].reshape(N_TRAIN, len(KINDS))
    assert dist[:, :2].max() < 0.05          # noise, brightness: nearly invisible
    assert dist[:, 2].max() < 0.02           # 1-2 px shift: the shift-tolerant check finds the copy ...
    plain = np.linalg.norm(px.embed(copies[2::len(KINDS)])[0] - e1, axis=1)
    assert 0.1 < plain.min() and plain.max() < 0.2   # ... whose plain vectors are 0.1-0.2 apart
    assert rep["num_rejected"] == len(copies)
    off = _pairwise(e1)[~np.eye(N_TRAIN, dtype=bool)]
    assert off.min() > 0.6 > px.threshold   # different faces pass
    rep = deidentification_report(np.stack([_face(i) for i in range(100, 104)]), train, px)
    assert rep["all_passed"] and rep["distance"].min() > 0.5
    flat = np.full((1, RES, RES, 3), 90, np.uint8)
    rep = deidentification_report(flat, train, px)
    assert rep["not_embedded"] == [{"index": 0, "reason": "flat_image"}]


def test_nearest_identity_matches_brute_force():
    import jax.numpy as jnp
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(13, 5)).astype(np.float32)
    q = np.concatenate([ref[[4, 0]] + 1e-4, rng.normal(size=(8, 5)).astype(np.float32)])
    full = np.linalg.norm(q[:, None] - ref[None], axis=-1)
    for chunk in (3, 1024):
        d, i = nearest_identity(jnp.asarray(q), ref, chunk=chunk)
        np.testing.assert_array_equal(i, full.argmin(1))
        np.testing.assert_allclose(d, full.min(1), rtol=1e-5, atol=1e-6)
        assert d.dtype == np.float32 and d.shape == (10,)
    np.testing.assert_allclose(d[:2], 1e-4 * np.sqrt(5), rtol=1e-2)  # exact for copies
    with pytest.raises(ValueError):
        nearest_identity(q, ref[:, :4])
