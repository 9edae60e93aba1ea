"""NVIDIA's dataset format (dataset_tool.py zip / folder + dataset.json) in and out of jaxgen
(jaxgen.data.nvidia_format, and the nvidia_dataset command line).

No JAX compile: every check decodes a dozen 8 px PNGs."""
import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from jaxgen.commands.common import run_main
from jaxgen.commands.nvidia_dataset import main
from jaxgen.config import data as data_config
from jaxgen.data import load_dataset, load_image_folder
from jaxgen.data.folder import DatasetError
from jaxgen.data.nvidia_dataset import export, import_
from jaxgen.data.nvidia_format import is_nvidia_dataset, load_nvidia_dataset
from jaxgen.data.nvidia_writer import nvidia_name, write_nvidia_dataset
from class_folders import write_class_folders

CLASSES = ("healthy", "mild", "severe")


@pytest.fixture
def class_folders(tmp_path):
    """12 random 8 px RGB images in 3 class folders (4 each); (path, their load)."""
    src = tmp_path / "src"
    write_class_folders(src, CLASSES)
    return src, load_image_folder(src, 8, 3, cache_dir=None)


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="png", compress_level=0)
    return buf.getvalue()


def _nvidia_zip(path, images, labels, extra=None):
    """A zip in exactly dataset_tool.py's layout, written here with zipfile alone (entries in
    reverse order and a directory entry, which a reader must not depend on)."""
    names = [f"{i // 1000:05d}/img{i:08d}.png" for i in range(len(images))]
    meta = {"labels": None if labels is None else [[n, lab] for n, lab in zip(names, labels)]}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("00000/", b"")
        for n, img in reversed(list(zip(names, images))):
            z.writestr(n, _png(img))
        z.writestr("dataset.json", json.dumps(dict(meta, **(extra or {}))))
    return path


def test_folder_to_zip_to_load_keeps_pixels_labels_and_names(class_folders, tmp_path):
    src, ref = class_folders
    out = export(str(src), str(tmp_path / "x.zip"))
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
        meta = json.loads(z.read("dataset.json"))
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}
    assert names == [nvidia_name(i) for i in range(12)] + ["dataset.json"]
    assert names[0] == "00000/img00000000.png" and nvidia_name(1234) == "00001/img00001234.png"
    assert meta["labels"] == [[nvidia_name(i), int(c)] for i, c in enumerate(ref.labels)]
    assert meta["class_names"] == list(CLASSES)
    ds = load_nvidia_dataset(out, 8, 3, cache_dir=None)
    assert np.array_equal(ds.images, ref.images) and np.array_equal(ds.labels, ref.labels)
    assert ds.class_names == list(CLASSES) and ds.summary["source"] == "nvidia"
    assert ds.summary["classes"] == {c: 4 for c in CLASSES}


def test_zip_to_class_folders_and_back_is_identical(class_folders, tmp_path):
    src, ref = class_folders
    z = export(str(src), str(tmp_path / "x.zip"))
    out = import_(str(z), str(tmp_path / "folders"))
    back = load_image_folder(out, 8, 3, cache_dir=None)
    assert np.array_equal(back.images, ref.images) and np.array_equal(back.labels, ref.labels)
    assert back.class_names == list(CLASSES)
    assert sorted(p.name for p in (out / "mild").iterdir()) == [f"img{i:08d}.png" for i in range(4, 8)]


def test_exports_an_evolve_or_generate_export_folder(class_folders, tmp_path):
    """An export's class folders sit beside latents/<class>/*.npy and loose preview PNGs."""
    src, ref = class_folders
    (src / "latents" / "mild").mkdir(parents=True)
    np.save(src / "latents" / "mild" / "mild_00000.npy", np.zeros(4, np.float32))
    Image.new("RGB", (40, 20)).save(src / "preview.png")
    with pytest.warns(UserWarning, match=r"ignoring 1 image\(s\) directly in .*preview.png"):
        z = export(str(src), str(tmp_path / "e.zip"))
    ds = load_nvidia_dataset(z, 8, cache_dir=None)
    assert ds.class_names == list(CLASSES) and np.array_equal(ds.images, ref.images)


def test_reads_a_zip_in_nvidia_layout(tmp_path):
    """Grayscale images, classes 0 and 2 only (NVIDIA: c_dim = max + 1 = 3), no class names."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 8, 8), np.uint8)
    labels = [2, 0, 2, 0, 2]
    path = _nvidia_zip(tmp_path / "nv.zip", images, labels)
    assert is_nvidia_dataset(path)
    ds = load_nvidia_dataset(path, 8, 1, cache_dir=None)
    assert np.array_equal(ds.images[..., 0], images)
    assert ds.labels.tolist() == labels and ds.class_names == ["0", "1", "2"]
    with pytest.warns(UserWarning, match="5 of 5 image.*were grayscale and were copied to 3 channels"):
        rgb = load_nvidia_dataset(path, 8, 3, cache_dir=None)      # converted like a folder
    assert np.array_equal(rgb.images, np.repeat(images[..., None], 3, -1))
    assert rgb.summary["conversions"]["grayscale->RGB"]["count"] == 5


def test_labels_null_is_one_unlabelled_class_and_needs_labels_for_conditional(tmp_path):
    root = tmp_path / "faces"
    rng = np.random.default_rng(2)
    (root / "00000").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), np.uint8)).save(root / nvidia_name(i))
    (root / "dataset.json").write_text('{"labels": null}')
    cfg = dict(source="folder", path=str(root), resolution=8, cache_dir=None)
    ds = load_dataset(cfg)
    assert ds.class_names == ["faces"] and ds.labels.tolist() == [0, 0, 0]
    with pytest.raises(DatasetError, match="1 class.*2 are required.*gives no labels"):
        load_dataset(dict(cfg, require_labels=True))
    # unlabelled out: "labels": null, the one class name kept for jaxgen
    out = write_nvidia_dataset(ds.images, ds.labels, ds.class_names, tmp_path / "u.zip")
    with zipfile.ZipFile(out) as z:
        assert json.loads(z.read("dataset.json")) == {"labels": None, "class_names": ["faces"]}
    assert load_nvidia_dataset(out, 8, cache_dir=None).class_names == ["faces"]


def test_jaxgen_dataset_json_without_labels_stays_class_folders(class_folders):
    src, ref = class_folders
    (src / "dataset.json").write_text(json.dumps({"generator": "jaxgen.data.demo_faces", "classes": CLASSES}))
    assert not is_nvidia_dataset(src)
    ds = load_dataset(dict(source="folder", path=str(src), resolution=8, cache_dir=None))
    assert ds.class_names == list(CLASSES) and np.array_equal(ds.images, ref.images)


@pytest.mark.parametrize("labels, extra, message", [
    ([0, 1], None, r"no label for 1 of 3 image\(s\) \(e.g. 00000/img00000002.png\)"),
    ([0, 1, 1, 0], None, r"labels 1 file\(s\) that are not images.*00000/img00000003.png"),
    ([0, "b", 1], None, r"1 label\(s\) are not integer classes >= 0 \(e.g. 00000/img00000001.png: \"b\"\)"),
    ([0, 1.5, 1], None, "not integer classes"),
    ([[0.2, 0.8], [1, 0], [0, 1]], None, "label vectors; jaxgen trains on one integer class"),
    ([0, 2, 1], {"class_names": ["a", "b"]}, r'"class_names" has 2 name\(s\) but the labels go up to 2'),
])
def test_bad_labels_are_refused_in_one_line(tmp_path, labels, extra, message):
    images = np.zeros((3, 8, 8, 3), np.uint8)
    path = _nvidia_zip(tmp_path / "bad.zip", images, None, extra)
    names = [nvidia_name(i) for i in range(len(labels))]
    with zipfile.ZipFile(path) as z:               # replace dataset.json's labels
        meta = dict(json.loads(z.read("dataset.json")), labels=[[n, lab] for n, lab in zip(names, labels)])
    _rewrite(path, "dataset.json", json.dumps(meta))
    with pytest.raises(DatasetError, match=message) as e:
        load_nvidia_dataset(path, 8, cache_dir=None)
    assert "\n" not in str(e.value) and "dataset.json in" in str(e.value)


def _rewrite(path, name, text):
    """`path` (a zip) with member `name` replaced by `text`."""
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist() if n != name}
    with zipfile.ZipFile(path, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
        z.writestr(name, text)


def test_broken_files_and_mixed_sizes_are_refused(tmp_path):
    path = _nvidia_zip(tmp_path / "a.zip", np.zeros((2, 8, 8), np.uint8), [0, 1])
    _rewrite(path, "dataset.json", "{not json")
    with pytest.raises(DatasetError, match="is not valid JSON.*delete it to load the images unlabelled"):
        load_nvidia_dataset(path, 8, cache_dir=None)
    _rewrite(path, "dataset.json", '{"images": []}')
    with pytest.raises(DatasetError, match='has no "labels"'):
        load_nvidia_dataset(path, 8, cache_dir=None)
    _rewrite(path, "dataset.json", '{"labels": null}')
    _rewrite(path, "00000/img00000001.png", _png(np.zeros((16, 16), np.uint8)))
    with pytest.raises(DatasetError, match=r"have 2 sizes \(8x8: 1, 16x16: 1; e.g. .*dataset_tool.py --width"):
        load_nvidia_dataset(path, 8, cache_dir=None)
    nested = tmp_path / "nested.zip"
    with zipfile.ZipFile(nested, "w") as z:
        z.writestr("faces/00000/img00000000.png", _png(np.zeros((8, 8), np.uint8)))
        z.writestr("faces/dataset.json", '{"labels": [["00000/img00000000.png", 0]]}')
    with pytest.raises(DatasetError, match="has faces/dataset.json but no dataset.json at its top"):
        load_nvidia_dataset(nested, 8, cache_dir=None)
    (tmp_path / "not.zip").write_text("hello")
    with pytest.raises(DatasetError, match="is not a readable zip"):
        load_nvidia_dataset(tmp_path / "not.zip", 8)
    with pytest.raises(DatasetError, match="dataset not found"):
        load_nvidia_dataset(tmp_path / "missing.zip", 8)


def _cli(argv, capsys):
    """(exit status, stderr) of the command line, as a user runs it."""
    with pytest.raises(SystemExit) as e:
        run_main(lambda: main(argv))
    return e.value.code, capsys.readouterr().err.strip()


def test_existing_outputs_are_refused_before_any_work(class_folders, tmp_path, capsys):
    src, _ = class_folders
    taken = tmp_path / "taken.zip"
    taken.write_bytes(b"mine")
    code, err = _cli(["export", str(src), str(taken)], capsys)
    assert code == 2 and err == (f"error: OUT {taken} exists; nothing was written: choose a new .zip "
                                 "name or delete it") and taken.read_bytes() == b"mine"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    code, err = _cli(["import", str(taken), str(mine)], capsys)
    assert code == 2 and "OUT_DIR" in err and "not written by jaxgen" in err and "\n" not in err
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    code, err = _cli(["export", str(src), str(tmp_path / "r.zip"), "--resolution", "12"], capsys)
    assert code == 2 and err.startswith("error: --resolution 12: NVIDIA's format needs a power of two")
    assert not (tmp_path / "r.zip").exists()
    out = tmp_path / "nv_folder"                     # a folder export, then again: refused
    assert main(["export", str(src), str(out)]) == 0
    code, err = _cli(["export", str(src), str(out)], capsys)
    assert code == 2 and "holds an earlier conversion" in err


def test_load_dataset_from_a_config_with_the_zip_path(class_folders, tmp_path):
    src, ref = class_folders
    z = export(str(src), str(tmp_path / "acne.zip"))
    cfg = data_config(source="folder", path=str(z), resolution=8)
    cfg.cache_dir = str(tmp_path / "cache")
    first, second = load_dataset(cfg), load_dataset(cfg)       # the second from the cache
    assert len(list((tmp_path / "cache").iterdir())) == 1
    for ds in (first, second):
        assert np.array_equal(ds.images, ref.images) and np.array_equal(ds.labels, ref.labels)
        assert ds.class_names == list(CLASSES) and ds.summary["source"] == "nvidia"
    with pytest.warns(UserWarning, match="12 of 12 image.*converted to grayscale"):
        small = load_dataset(dict(cfg.to_dict(), resolution=4, channels=1, cache_dir=None))
    assert small.images.shape == (12, 4, 4, 1) and small.summary["source_sizes"] == {"8x8 RGB": 12}
