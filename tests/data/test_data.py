"""Tests for jaxgen.data: the procedural demo faces, the folder loader, batches, TFDS."""
import json
import logging
import os
import types
import warnings

import numpy as np
import pytest
from PIL import Image

from jaxgen.commands import demo_faces as demo_faces_command
from jaxgen.commands.pack import main as pack_main
from jaxgen.data import load_dataset
from jaxgen.data import demo_faces, folder
from jaxgen.data.demo_faces import render_face, write_demo_dataset
from jaxgen.data.folder import (DatasetError, ImageDataset, load_image_folder, scan_image_folder, to_float, to_uint8)
from jaxgen.utils.outputs import MARKER


# ----------------------------------------------------------------- demo faces

def test_render_is_deterministic_and_seed_dependent():
    a = render_face(np.random.default_rng(7), 2, 32)
    b = render_face(np.random.default_rng(7), 2, 32)
    c = render_face(np.random.default_rng(8), 2, 32)
    assert a.dtype == np.uint8 and a.shape == (32, 32, 3)
    assert a.tobytes() == b.tobytes()
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 5
    assert render_face(np.random.default_rng(0), 0, 16).shape == (16, 16, 3)
    for bad in (48, 8, 2048):
        with pytest.raises(DatasetError, match="power of two|<="):
            render_face(np.random.default_rng(0), 0, bad)
    with pytest.raises(ValueError, match="severity"):
        render_face(np.random.default_rng(0), 4, 32)


def _lesion_pixels(seed, severity, res=64):
    """Pixels that got redder (green fell more than red) than the same face
    drawn without lesions: lesions are drawn last, so the face is identical."""
    base = render_face(np.random.default_rng(seed), 0, res).astype(int)
    img = render_face(np.random.default_rng(seed), severity, res).astype(int)
    drop = base - img
    return int(((drop[..., 1] - drop[..., 0]) > 10).sum()), base, img


def test_lesion_area_grows_with_severity_and_stays_on_the_face():
    counts = np.zeros((4, 6))
    for s in range(4):
        for i in range(6):
            counts[s, i], base, img = _lesion_pixels([3, i], s)
            border = np.ones((64, 64), bool)
            border[4:, 4:-4] = False  # (the chin may reach the bottom edge)
            assert (base[border] == img[border]).all()  # nothing on the background edge
    mean = counts.mean(1)
    assert mean[0] == 0 and mean[1] > 10
    assert mean[1] < mean[2] < mean[3], mean
    assert (counts[3] > counts[1]).all()


def test_write_demo_dataset_idempotent_and_resumable(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="jaxgen")
    out = tmp_path / "demo"
    info = write_demo_dataset(out, num_per_class=3, resolution=32, seed=1, progress=False)
    assert info["rendered"] == 12 and info["complete"]
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert files == [f"{c}/{c}_{i:05d}.png" for c in demo_faces.DEFAULT_CLASSES
                     for i in range(3)]
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["classes"] == list(demo_faces.DEFAULT_CLASSES)
    assert meta["counts"] == {c: 3 for c in demo_faces.DEFAULT_CLASSES}
    assert (meta["resolution"], meta["seed"], meta["complete"]) == (32, 1, True)
    assert meta["generator_version"] == demo_faces.GENERATOR_VERSION
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    original = (out / "mild" / "mild_00001.png").read_bytes()

    again = write_demo_dataset(out, num_per_class=3, resolution=32, seed=1, progress=True)
    assert again["rendered"] == 0
    assert "reused all of 12" in caplog.text
    assert stamp == {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}

    (out / "mild" / "mild_00001.png").unlink()
    (out / "severe" / "severe_00002.png").write_bytes(b"truncated")
    resumed = write_demo_dataset(out, num_per_class=3, resolution=32, seed=1, progress=False)
    assert resumed["rendered"] == 2
    assert (out / "mild" / "mild_00001.png").read_bytes() == original

    with pytest.raises(DatasetError, match=r"resolution: 32 != 16.*overwrite"):
        write_demo_dataset(out, num_per_class=3, resolution=16, seed=1, progress=False)
    fresh = write_demo_dataset(out, num_per_class=2, resolution=16, seed=1, progress=False,
                               classes=("healthy", "severe"), overwrite=True)
    assert fresh["rendered"] == 4
    assert sorted(p.name for p in out.rglob("*.png")) == [
        "healthy_00000.png", "healthy_00001.png", "severe_00000.png", "severe_00001.png"]
    with pytest.raises(DatasetError, match="distinct names"):
        write_demo_dataset(tmp_path / "x", classes=("healthy", "acne"), progress=False)


def test_cli_writes_dataset_and_preview(tmp_path):
    out = tmp_path / "cli"
    assert demo_faces_command.main(["--out", str(out), "--num-per-class", "2", "--resolution", "16",
                                    "--seed", "3", "--classes", "healthy,severe", "--quiet"]) == 0
    preview = Image.open(out / "preview.png")
    assert preview.size[1] > 2 * 96 and preview.size[0] > 2 * 96
    with warnings.catch_warnings():                 # preview.png is the export's own plot: no warning
        warnings.simplefilter("error")
        ds = load_image_folder(out, 16, cache_dir=None)
    assert ds.class_names == ["healthy", "severe"] and ds.labels.tolist() == [0, 0, 1, 1]
    (out / MARKER).unlink()                         # a folder of someone's own: its loose image is named
    with pytest.warns(UserWarning, match=r"ignoring 1 image.*\(preview.png\)"):
        assert load_image_folder(out, 16, cache_dir=None).labels.tolist() == [0, 0, 1, 1]
    # classes map to severities by name: the severe images equal severity-3 renders
    ref = render_face(np.random.default_rng([3, 3, 1]), 3, 16)
    assert (ds.images[3] == ref).all()


def test_demo_loads_back_through_folder_loader_and_dispatcher(tmp_path):
    out = tmp_path / "demo"
    cfg = {"source": "demo", "path": str(out), "resolution": 32, "num_per_class": 2,
           "seed": 0, "progress": False}
    ds = load_dataset(cfg)
    assert ds.images.shape == (8, 32, 32, 3) and ds.images.dtype == np.uint8
    assert ds.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert ds.class_names == list(demo_faces.DEFAULT_CLASSES)
    on_disk = np.asarray(Image.open(out / "moderate" / "moderate_00001.png"))
    assert (ds.images[5] == on_disk).all()  # same size: loaded without change
    small = load_dataset(types.SimpleNamespace(source="folder", path=str(out), resolution=8,
                                               channels=1, cache_dir=None))
    assert small.images.shape == (8, 8, 8, 1)
    with pytest.raises(DatasetError, match="unknown dataset source"):
        load_dataset({"source": "hub", "resolution": 8})


# -------------------------------------------------------------- folder loader

def _write_odd_folder(root):
    """Two classes with every awkward kind of file the loader must accept."""
    a, b = root / "a", root / "b" / "nested" / "deeper"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, :20] = (0, 255, 0)
    wide[:, 20:40] = (255, 0, 0)
    wide[:, 40:] = (0, 0, 255)
    Image.fromarray(wide).save(a / "1_wide.png")  # centre crop must keep the red third
    Image.fromarray(np.full((30, 50), 90, np.uint8)).save(a / "2_gray.jpg", quality=95)
    Image.fromarray(np.full((9, 9, 3), 200, np.uint8)).save(a / "3_upper.PNG")
    Image.fromarray(np.full((12, 12, 3), 10, np.uint8)).save(a / "4_small.bmp")
    rgba = np.zeros((16, 16, 4), np.uint8)  # fully transparent: composited on white
    Image.fromarray(rgba).save(root / "b" / "1_rgba.png")
    Image.fromarray(np.full((16, 24), 32768, np.uint16)).save(root / "b" / "2_deep16.png")
    pal = Image.new("P", (16, 16), 0)
    pal.putpalette([0, 0, 255] + [0] * 765)
    pal.save(root / "b" / "3_palette.png")
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(b / "4_nested.webp")
    Image.fromarray(wide).save(a / ".hidden.png")
    (root / ".cache").mkdir()
    Image.fromarray(wide).save(root / ".cache" / "x.png")
    (a / "notes.txt").write_text("not an image")


def test_scan_and_load_odd_inputs(tmp_path):
    _write_odd_folder(tmp_path)
    items, names = scan_image_folder(tmp_path)
    assert names == ["a", "b"]
    rel = [(os.path.relpath(p, tmp_path), lab) for p, lab in items]
    assert rel == [("a/1_wide.png", 0), ("a/2_gray.jpg", 0), ("a/3_upper.PNG", 0),
                   ("a/4_small.bmp", 0), ("b/1_rgba.png", 1), ("b/2_deep16.png", 1),
                   ("b/3_palette.png", 1), ("b/nested/deeper/4_nested.webp", 1)]
    ds = load_image_folder(tmp_path, 8, cache_dir=None)
    assert ds.images.shape == (8, 8, 8, 3) and ds.labels.tolist() == [0] * 4 + [1] * 4
    assert ds.paths == [p for p, _ in items] and ds.num_classes == 2
    px = ds.images.astype(int)
    assert abs(px[0, :, 2:6] - [255, 0, 0]).max() <= 3  # centre third only
    assert abs(px[1] - 90).max() <= 3 and (px[1, ..., 0] == px[1, ..., 2]).all()
    assert (px[2] == 200).all() and (px[3] == 10).all()
    assert (px[4] == 255).all()  # transparent -> white
    assert abs(px[5] - 128).max() <= 1  # 16-bit 32768 -> 128
    assert (px[6] == [0, 0, 255]).all()
    gray = load_image_folder(tmp_path, 4, channels=1, cache_dir=None)
    assert gray.images.shape == (8, 4, 4, 1)
    assert abs(int(gray.images[6].mean()) - 29) <= 1  # blue -> luma 0.114 * 255


def test_exif_rotation_and_unlabelled_folder(tmp_path):
    img = np.zeros((10, 20, 3), np.uint8)
    img[:, 10:] = 255  # stored: left dark, right bright
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": right half ends up at the bottom
    Image.fromarray(img).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    Image.fromarray(img).save(tmp_path / "plain.png")
    ds = load_image_folder(tmp_path, 8, cache_dir=None)
    assert ds.class_names == [tmp_path.name] and ds.labels.tolist() == [0, 0]
    rot, plain = ds.images.astype(int).mean(-1)
    assert rot[:3].mean() < 60 and rot[-3:].mean() > 200
    assert plain[:, :3].mean() < 60 and plain[:, -3:].mean() > 200


def test_folder_errors_name_the_problem_and_the_fix(tmp_path):
    with pytest.raises(DatasetError, match="not found.*class sub-folders") as e:
        load_image_folder(tmp_path / "nope", 8)
    assert "nope" in str(e.value)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match="no images found in .*empty"):
        load_image_folder(tmp_path / "empty", 8)
    one = tmp_path / "one" / "healthy"
    one.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(one / "a.png")
    with pytest.raises(DatasetError, match=r"1 class\(es\) \(healthy\).*2 are required.*"
                                           r"<class_name>"):
        load_image_folder(tmp_path / "one", 8, require_labels=True, cache_dir=None)
    with pytest.raises(DatasetError, match="3 are required"):
        load_image_folder(tmp_path / "one", 8, min_classes=3, cache_dir=None)
    for bad in (2, 0, "64", True, 64.0):
        with pytest.raises(DatasetError, match="resolution must be an integer >= 4"):
            load_image_folder(tmp_path / "one", bad)
    # Any size loads (a classifier reads e.g. 224); the GAN trainers require powers of two.
    assert load_image_folder(tmp_path / "one", 48, cache_dir=None).images.shape == (1, 48, 48, 3)
    with pytest.raises(DatasetError, match="channels must be 1 .* or 3"):
        load_image_folder(tmp_path / "one", 8, channels=4)


def test_corrupt_files_are_all_reported_or_skipped(tmp_path):
    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "good.png")
    (tmp_path / "bad1.png").write_bytes(b"\x89PNG not really")
    good = tmp_path / "good.png"
    (tmp_path / "bad2.jpg").write_bytes(good.read_bytes()[:30])
    with pytest.raises(DatasetError) as e:
        load_image_folder(tmp_path, 4, cache_dir=None)
    msg = str(e.value)
    assert "2 of 3 image(s)" in msg and "bad1.png" in msg and "bad2.jpg" in msg
    assert "skip_corrupt=True" in msg
    with pytest.warns(UserWarning, match="skipped 2 unreadable.*bad1.png.*bad2.jpg"):
        ds = load_image_folder(tmp_path, 4, skip_corrupt=True, cache_dir=tmp_path / "c")
    assert len(ds) == 1 and ds.paths[0].endswith("good.png")
    with pytest.warns(UserWarning, match="skipped 2"):  # also on a cache hit
        assert len(load_image_folder(tmp_path, 4, skip_corrupt=True,
                                     cache_dir=tmp_path / "c")) == 1


def test_cache_hit_and_invalidation(tmp_path, monkeypatch):
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    for i in range(3):
        Image.new("RGB", (10, 14), (i * 50, 0, 0)).save(data / f"{i}.png")
    first = load_image_folder(data, 8, cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 1
    calls = []
    real = folder._decode
    monkeypatch.setattr(folder, "_decode", lambda *a: calls.append(a) or real(*a))
    second = load_image_folder(data, 8, cache_dir=cache)
    assert calls == []  # served from the cache
    assert (second.images == first.images).all() and second.paths == first.paths
    Image.new("RGB", (30, 14), (255, 0, 0)).save(data / "1.png")  # size changes
    third = load_image_folder(data, 8, cache_dir=cache)
    assert len(calls) == 3 and (third.images[1, ..., 0] == 255).all()
    load_image_folder(data, 8, channels=1, cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 3
    load_image_folder(data, 8, cache_dir=None)
    assert len(list(cache.glob("*.npz"))) == 3


# ----------------------------------------------------------- values, batches

def test_to_float_and_back():
    u = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    f = to_float(u)
    assert f.dtype == np.float32 and f.min() == -1.0 and f.max() == 1.0
    assert (to_uint8(f) == u).all()
    assert to_uint8(np.array([-3.0, 0.0, 7.0])).tolist() == [0, 128, 255]


def _toy(n=10, classes=3):
    img = np.zeros((n, 4, 4, 1), np.uint8)
    img[:, :, 0] = np.arange(n)[:, None, None] * 10 + 5  # left column marks the image
    return ImageDataset(img, np.arange(n, dtype=np.int32) % classes,
                        [f"c{i}" for i in range(classes)], [str(i) for i in range(n)])


# ----------------------------------------------------------------------- TFDS

@pytest.fixture(scope="module")
def tiny_tfds(tmp_path_factory):
    """A 3-class TFDS dataset built offline from in-memory arrays."""
    tfds = pytest.importorskip("tensorflow_datasets")
    data_dir = tmp_path_factory.mktemp("tfds")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 12, 20, 3), dtype=np.uint8)
    images[:, :, 6:14] = (np.arange(7) * 30)[:, None, None, None]  # centre = index marker

    class JaxgenTinyFaces(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")
        url_infos = None  # nothing to download (also skips the checksum-file lookup)

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3)),
                "label": tfds.features.ClassLabel(names=["healthy", "mild", "severe"]),
                "score": tfds.features.Tensor(shape=(2,), dtype=np.float32)}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(range(5)),
                    "test": self._generate_examples(range(5, 7))}

        def _generate_examples(self, idx):
            for i in idx:
                yield i, {"image": images[i], "label": i % 3,
                          "score": np.zeros(2, np.float32)}

    JaxgenTinyFaces(data_dir=str(data_dir)).download_and_prepare()
    return str(data_dir), images


def test_pack_a_tfds_split_gives_the_loaders_images(tiny_tfds, tmp_path):
    """`python -m jaxgen pack NAME OUT --source tfds` reads the split example by example and
    packs what load_tfds loads (jaxgen.data.pack; the format's own tests: test_packed.py)."""
    from jaxgen.data.packed import load_packed
    from jaxgen.data.tfds_source import load_tfds
    data_dir, _ = tiny_tfds
    out = tmp_path / "packed"
    assert pack_main(["jaxgen_tiny_faces", str(out), "--source", "tfds", "--resolution", "8",
                      "--data_dir", data_dir, "--progress_every", "0"]) == 0
    want = load_tfds("jaxgen_tiny_faces", "train", 8, data_dir=data_dir)
    ds = load_packed(out, 8, 3, stream="always")
    np.testing.assert_array_equal(ds.images[:], want.images)
    np.testing.assert_array_equal(ds.labels, want.labels)
    assert ds.class_names == want.class_names and list(ds.paths) == want.paths
    assert ds.summary["source"] == "tfds" and ds.summary["classes"] == {"healthy": 2, "mild": 2, "severe": 1}


def test_load_tfds_offline(tiny_tfds, tmp_path):
    from jaxgen.data.tfds_source import load_tfds
    data_dir, images = tiny_tfds
    ds = load_tfds("jaxgen_tiny_faces", "train", 8, data_dir=data_dir)
    assert ds.images.shape == (5, 8, 8, 3) and ds.class_names == ["healthy", "mild", "severe"]
    marker = np.rint(ds.images[:, 2:6, 2:6].astype(float).mean((1, 2, 3)) / 30).astype(int)
    assert sorted(marker.tolist()) == [0, 1, 2, 3, 4]
    assert (ds.labels == marker % 3).all()  # labels stay with their images
    test = load_tfds("jaxgen_tiny_faces", "test", 4, channels=1, data_dir=data_dir,
                     label_key=None, max_examples=1)
    assert test.images.shape == (1, 4, 4, 1) and test.class_names == ["jaxgen_tiny_faces"]
    cfg = {"source": "tfds", "name": "jaxgen_tiny_faces", "split": "train[:2]",
           "resolution": 4, "data_dir": data_dir}
    assert len(load_dataset(cfg)) == 2

    with pytest.raises(DatasetError, match=r"not prepared.*tfds build jaxgen_tiny_faces"
                                           r".*data_dir"):
        load_tfds("jaxgen_tiny_faces", "train", 8, data_dir=str(tmp_path))
    with pytest.raises(DatasetError, match="not found.*tfds build"):
        load_tfds("no_such_dataset_xyz", "train", 8, data_dir=str(tmp_path))
    with pytest.raises(DatasetError, match=r"no feature 'img'.*'image', 'label', 'score'"):
        load_tfds("jaxgen_tiny_faces", "train", 8, data_dir=data_dir, image_key="img")
    with pytest.raises(DatasetError, match=r"split 'valid'.*\['test', 'train'\]"):
        load_tfds("jaxgen_tiny_faces", "valid", 8, data_dir=data_dir)
    with pytest.raises(DatasetError, match="not a single integer"):
        load_tfds("jaxgen_tiny_faces", "train", 8, data_dir=data_dir, label_key="score")


def test_empty_cache_dir_means_no_cache(tmp_path, monkeypatch):
    """cache_dir='' (the configs' "off") must not write a cache into the working directory."""
    from jaxgen.data.folder import load_image_folder
    from PIL import Image
    d = tmp_path / "imgs" / "a"
    d.mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(d / f"{i}.png")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    ds = load_image_folder(tmp_path / "imgs", 8, 3, cache_dir="")
    assert len(ds) == 2 and int(ds.images[1].max()) == 40
    assert list(work.iterdir()) == []


def _redness(img):
    """Mean of (R - (G + B) / 2) over the image: lesions raise it."""
    x = img.astype(np.float32)
    return float(np.mean(x[..., 0] - (x[..., 1] + x[..., 2]) / 2))


def test_renderer_versions_draw_the_same_people_with_bigger_lesions_in_later_ones(tmp_path):
    rng = lambda s, i: np.random.default_rng([0, s, i])   # noqa: E731
    for i in range(3):      # healthy: no lesions, the same draws in every version
        v1 = render_face(rng(0, i), 0, 32, version=1)
        assert np.array_equal(v1, render_face(rng(0, i), 0, 32, version=2))
        assert np.array_equal(v1, render_face(rng(0, i), 0, 32, version=3))
    for s in (1, 3):        # larger lesions on the same faces: redder in v2 than v1 (64 px), in v3 than v2 (32 px)
        gain = [_redness(render_face(rng(s, i), s, 64, version=2)) -
                _redness(render_face(rng(s, i), s, 64, version=1)) for i in range(4)]
        assert min(gain) > 0, (s, gain)
    for s in (2, 3):        # v3's mild has fewer lesions than v2's, so only moderate and severe are compared
        gain = [_redness(render_face(rng(s, i), s, 32, version=3)) -
                _redness(render_face(rng(s, i), s, 32, version=2)) for i in range(4)]
        assert min(gain) > 0, (s, gain)
    write_demo_dataset(tmp_path / "v1", 1, 16, version=1, progress=False)
    with pytest.raises(DatasetError, match="generator_version: 1 != 3.*renderer version 1"):
        write_demo_dataset(tmp_path / "v1", 1, 16, progress=False)
    assert write_demo_dataset(tmp_path / "v1", 1, 16, version=1, progress=False)["rendered"] == 0
