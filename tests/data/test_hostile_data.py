"""Hostile or broken NVIDIA datasets (issue 28): huge labels, zip bombs, pixel bombs, entries
outside the zip, repeated class names and unreadable first images end in one line naming the
input, before memory is filled; a zip trains as the README says (--config.data.path=faces.zip).

The bombs are built by hand in a few MB: a zip entry of N MiB of zeros is N copies of one
deflated MiB (~1 KB), a 30000 x 30000 PNG of one colour is ~100 KB. The memory cases also
run as a user runs them, in a subprocess under a 4 GB address-space limit (RLIMIT_AS)."""
import io
import json
import os
import pathlib
import struct
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from jaxgen.commands.common import run_main
from jaxgen.commands.nvidia_dataset import main
from jaxgen.config import load_config
from jaxgen.data import load_dataset
from jaxgen.data import nvidia_format
from jaxgen.data.folder import DatasetError
from jaxgen.data.nvidia_archive import MAX_ENTRY_BYTES, Archive
from jaxgen.data.nvidia_format import MAX_CLASSES, load_nvidia_dataset
from jaxgen.data.nvidia_writer import nvidia_name
from jaxgen.errors import InputMissing
from jaxgen.stylegan2 import train as sg2_train

REPO = pathlib.Path(__file__).resolve().parents[2]
ADDRESS_SPACE = 4 * 10 ** 9       # `ulimit -v 4000000`; JAX's import and train.py start under it


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="png", compress_level=0)
    return buf.getvalue()


def _zip(path, entries: dict, meta=None):
    """A stored zip of {name: bytes} (+ dataset.json `meta` when given)."""
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
        if meta is not None:
            z.writestr("dataset.json", json.dumps(meta))
    return path


def _images(n, size=8):
    """{nvidia name: PNG bytes} of n random `size` px RGB images."""
    rng = np.random.default_rng(0)
    return {nvidia_name(i): _png(rng.integers(0, 256, (size, size, 3), np.uint8)) for i in range(n)}


def _labelled(path, labels, **extra):
    """An NVIDIA zip (or folder, for a path without .zip) of len(labels) images with these labels."""
    images = _images(len(labels))
    meta = dict(labels=[[n, lab] for n, lab in zip(images, labels)], **extra)
    if path.suffix != ".zip":
        for name, data in images.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_bytes(data)
        (path / "dataset.json").write_text(json.dumps(meta))
        return path
    return _zip(path, images, meta)


def _zeros_zip(path, names, mib: int):
    """A zip whose entries each inflate to `mib` MiB of zeros, written by hand: zipfile would
    deflate every byte. One MiB deflated and fully flushed is history-free, so `mib` copies of
    it and an empty final block are a valid deflate stream (~1 KB per MiB); the CRC is real."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = (c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)) * mib + b"\x03\x00"
    crc, zero = 0, bytes(1 << 20)
    for _ in range(mib):
        crc = zlib.crc32(zero, crc)
    local, central = bytearray(), bytearray()
    for name in names:
        n, offset = name.encode(), len(local)
        local += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(data), mib << 20, len(n), 0)
        local += n + data
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc, len(data), mib << 20,
                               len(n), 0, 0, 0, 0, 0, offset) + n
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(names), len(names), len(central), len(local), 0)
    pathlib.Path(path).write_bytes(bytes(local + central + end))
    return path


def _huge_png(width: int, height: int) -> bytes:
    """A valid 1-bit black PNG of width x height pixels, its all-zero scanlines deflated in pieces."""
    row = bytes(1 + (width + 7) // 8)
    per = max(1, (4 << 20) // len(row))
    c, parts = zlib.compressobj(9), []
    for start in range(0, height, per):
        parts.append(c.compress(row * min(per, height - start)))
    parts.append(c.flush())

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


def _cli(argv, capsys):
    """(exit status, stderr) of the nvidia_dataset command line, as a user runs it."""
    with pytest.raises(SystemExit) as e:
        run_main(lambda: main(argv))
    return e.value.code, capsys.readouterr().err.strip()


def test_a_label_over_the_class_bound_is_refused_before_the_names_are_made(tmp_path):
    over = _labelled(tmp_path / "over.zip", [0, MAX_CLASSES])          # no "class_names"
    with pytest.raises(DatasetError) as e:
        load_nvidia_dataset(over, 8, cache_dir=None)
    msg = str(e.value)
    assert f"label {MAX_CLASSES} (of 00000/img00000001.png) is over the 100,000 classes" in msg and "\n" not in msg
    named = _labelled(tmp_path / "named.zip", [0, 10 ** 12], class_names=["a", "b"])   # int32 would overflow
    with pytest.raises(DatasetError, match=r'"class_names" has 2 name\(s\) but the labels go up to 1000000000000'):
        load_nvidia_dataset(named, 8, cache_dir=None)
    ok = load_nvidia_dataset(_labelled(tmp_path / "ok.zip", [0, MAX_CLASSES - 1]), 8, cache_dir=None)
    assert ok.num_classes == MAX_CLASSES and ok.labels.tolist() == [0, MAX_CLASSES - 1]


def test_repeated_class_names_are_refused(tmp_path):
    path = _labelled(tmp_path / "dup.zip", [0, 1, 2], class_names=["acne", "mild", "acne"])
    with pytest.raises(DatasetError) as e:
        load_nvidia_dataset(path, 8, cache_dir=None)
    assert "\"class_names\" has 'acne' twice (classes 0 and 2)" in str(e.value)


@pytest.mark.parametrize("entry", ["/etc/x.png", "../x.png", "00000/../../x.png", "C:/x.png"])
def test_entries_outside_the_zip_are_refused_by_name(tmp_path, entry, capsys):
    path = _zip(tmp_path / "evil.zip", dict(_images(2), **{entry: _png(np.zeros((8, 8, 3), np.uint8))}))
    with pytest.raises(DatasetError) as e:
        load_nvidia_dataset(path, 8, cache_dir=None)
    assert f"holds the entry {entry!r}, a path outside the zip" in str(e.value)
    code, err = _cli(["import", str(path), str(tmp_path / "out")], capsys)
    assert code == 2 and err.count("\n") == 0 and repr(entry) in err and not (tmp_path / "out").exists()


def test_a_zip_bomb_is_refused_from_its_declared_size_and_ratio(tmp_path):
    mib = (MAX_ENTRY_BYTES >> 20) + 1
    bomb = _zeros_zip(tmp_path / "bomb.zip", [nvidia_name(0), nvidia_name(1)], mib)
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(DatasetError) as e:
        load_nvidia_dataset(bomb, 8, cache_dir=None)
    assert f"00000/img00000000.png in {bomb} is {mib << 20:,} bytes, over the {MAX_ENTRY_BYTES:,}" in str(e.value)
    with Archive(bomb, max_entry_bytes=mib << 20) as arch:     # under a larger cap it reads as zeros
        assert arch.read(nvidia_name(1)) == bytes(mib << 20)
    ratio = tmp_path / "bz2.zip"                                 # 4 MiB in ~50 bytes: no deflate does that
    with zipfile.ZipFile(ratio, "w", zipfile.ZIP_BZIP2) as z:
        z.writestr(nvidia_name(0), bytes(4 << 20))
    with pytest.raises(DatasetError, match=r"inflates from \d+ to 4,194,304 bytes \(over 1100x: a zip bomb"):
        load_nvidia_dataset(ratio, 8, cache_dir=None)
    with pytest.raises(DatasetError, match="is 4,194,304 bytes, over the 1,000,000"):
        Archive(ratio, max_entry_bytes=10 ** 6).read(nvidia_name(0))


def test_an_oversized_dataset_json_is_refused(tmp_path, monkeypatch):
    path = _labelled(tmp_path / "a.zip", [0, 1])
    monkeypatch.setattr(nvidia_format, "MAX_JSON_BYTES", 64)
    with pytest.raises(DatasetError, match=r"dataset.json in .* is \d+ bytes, over the 64 one file"):
        load_nvidia_dataset(path, 8, cache_dir=None)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")   # PIL's, for 10000 x 10000
def test_unreadable_or_huge_first_images_are_one_line_naming_the_entry(tmp_path, capsys):
    rest = _images(2)
    cases = {"garbage": (b"not a PNG at all", "is not a readable image (UnidentifiedImageError"),
             "bomb": (_huge_png(30000, 30000), "has too many pixels to decode (Image size (900000000 pixels)"),
             "big": (_huge_png(10000, 10000), ": 10000x10000 is 100,000,000 pixels, over the 67,108,864")}
    for kind, (first, message) in cases.items():
        path = _zip(tmp_path / f"{kind}.zip", {nvidia_name(0): first, **{nvidia_name(i + 1): d
                                                                         for i, d in enumerate(rest.values())}})
        code, err = _cli(["import", str(path), str(tmp_path / f"out_{kind}")], capsys)
        assert code == 2 and err.count("\n") == 0, err
        assert err.startswith(f"error: 00000/img00000000.png in {path}") and message in err, err
        assert not (tmp_path / f"out_{kind}").exists()
    big = _zip(tmp_path / "big.zip", {nvidia_name(0): _huge_png(10000, 10000)})   # PIL only warns of these
    with pytest.raises(DatasetError, match=r"00000/img00000000.png \(DatasetError: 10000x10000 is 100,000,000 pixels"):
        load_nvidia_dataset(big, 8, cache_dir=None)


def test_reading_in_byte_bounded_chunks_gives_the_same_dataset(tmp_path, monkeypatch):
    path = _labelled(tmp_path / "a.zip", [0, 1, 2, 1, 0])
    whole = load_nvidia_dataset(path, 8, cache_dir=None)
    monkeypatch.setattr(nvidia_format, "_CHUNK_BYTES", 1)          # one file per chunk
    parts = load_nvidia_dataset(path, 8, cache_dir=None)
    assert np.array_equal(whole.images, parts.images) and whole.labels.tolist() == [0, 1, 2, 1, 0]


class DataLoaded(Exception):
    """Raised by the guard: the trainer got through validation to its data."""


def test_the_readme_command_trains_on_a_zip(tmp_path, monkeypatch):
    """`train.py --config configs/acne.py --config.data.path=faces.zip`: validation lets the zip
    through and the trainer's data is the zip's (a micro config; stopped where data loads)."""
    loaded = []

    def guard(cfg):
        loaded.append(load_dataset(cfg))
        raise DataLoaded

    monkeypatch.setattr(sg2_train, "load_dataset", guard)
    faces = _labelled(tmp_path / "faces.zip", [0, 1, 1, 0], class_names=["healthy", "severe"])
    cfg = load_config(str(REPO / "configs/acne.py") + ":micro",
                      ["data.source=folder", f"data.path={faces}", "data.cache_dir="])
    with pytest.raises(DataLoaded):
        sg2_train.train_and_evaluate(cfg, str(tmp_path / "run"))
    ds = loaded[0]
    assert ds.summary["source"] == "nvidia" and ds.class_names == ["healthy", "severe"]
    assert ds.labels.tolist() == [0, 1, 1, 0] and ds.images.shape == (4, 16, 16, 3)
    cfg = load_config(str(REPO / "configs/acne.py") + ":micro",
                      ["data.source=folder", f"data.path={tmp_path / 'missing.zip'}"])
    with pytest.raises(InputMissing, match=r"missing.zip' does not exist.*or a dataset_tool.py .zip"):
        sg2_train.train_and_evaluate(cfg, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


# Sets the limit, then becomes `python argv` (exec keeps it). Not preexec_fn: this test process
# runs JAX's threads, and a fork that runs Python before exec may deadlock in them.
_SHIM = ("import os, resource, sys; resource.setrlimit(resource.RLIMIT_AS, ({0}, {0})); "
         "os.execv(sys.executable, [sys.executable] + sys.argv[1:])")


def _run_limited(argv, cwd):
    """(exit status, stderr) of `python argv` under RLIMIT_AS = ADDRESS_SPACE."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAXGEN_JAX_CACHE="")
    env.pop("JAXGEN_DEBUG", None)
    out = subprocess.run([sys.executable, "-c", _SHIM.format(ADDRESS_SPACE), *argv], capture_output=True,
                         text=True, timeout=300, env=env, cwd=cwd)
    return out.returncode, out.stderr.strip()


def test_the_limit_reaches_the_command():
    code, err = _run_limited(["-c", "import resource, sys; print(resource.getrlimit(resource.RLIMIT_AS)[0], "
                              "file=sys.stderr); bytearray(5 * 10 ** 9)"], REPO)
    assert code == 1 and err.startswith(f"{ADDRESS_SPACE}\n") and err.endswith("MemoryError")


def test_memory_cases_end_in_one_line_under_a_4gb_address_space(tmp_path):
    """A label of 10**9 (train.py on an NVIDIA folder; the import command on a zip) and 3 zip
    entries of 1.5 GiB each (the import command): before, a list of 10**9 class names or the
    entries read whole ran out of memory (MemoryError traceback here, the OOM killer without
    the limit); now each is one line and exit status 2, and nothing is written."""
    (tmp_path / "folder").mkdir()
    folder = _labelled(tmp_path / "folder", [0, 10 ** 9])
    label_zip = _labelled(tmp_path / "label.zip", [0, 10 ** 9])
    bomb = _zeros_zip(tmp_path / "bomb.zip", [nvidia_name(i) for i in range(3)], 1536)
    cases = [
        (["train.py", "--config", str(REPO / "configs/acne.py") + ":micro", "--config.data.source=folder",
          f"--config.data.path={folder}", "--config.data.cache_dir=", "--workdir", str(tmp_path / "run")],
         "label 1000000000 (of 00000/img00000001.png) is over the 100,000 classes"),
        (["-m", "jaxgen", "nvidia_dataset", "import", str(label_zip), str(tmp_path / "out1")],
         "label 1000000000 (of 00000/img00000001.png) is over the 100,000 classes"),
        (["-m", "jaxgen", "nvidia_dataset", "import", str(bomb), str(tmp_path / "out2"), "--resolution", "8"],
         f"00000/img00000000.png in {bomb} is 1,610,612,736 bytes, over the 268,435,456"),
    ]
    for argv, message in cases:
        code, err = _run_limited(argv, REPO)
        lines = [ln for ln in err.splitlines() if not ln.startswith(("WARNING", "I0", "W0"))]
        assert code == 2 and len(lines) == 1 and message in lines[0], (argv, err[-2000:])
    assert not any((tmp_path / n).exists() for n in ("run", "out1", "out2"))
