"""The two procedural face sets (demo acne faces, depth faces): pinned pixels and the shared set writer.

The hashes were computed by the renderers and set writers before their shared
code moved to jaxgen.data.rendered_sets; a change of any pixel, file or manifest
byte of a rendered set fails here (Pillow's resampling is part of what they pin).
"""
import hashlib
import json

import numpy as np
from PIL import Image

from jaxgen.data.demo_faces import render_face, write_demo_dataset, write_preview
from jaxgen.data.depth_faces import render_depth_face, write_depth_dataset


def _digest(*arrays) -> str:
    """First 16 hex digits of the sha256 of the arrays' bytes, in order."""
    d = hashlib.sha256()
    for a in arrays:
        d.update(np.ascontiguousarray(a).tobytes())
    return d.hexdigest()[:16]


def _set_digest(root) -> str:
    """Digest of a written set: each PNG's name, mode and pixels, and dataset.json's text."""
    d = hashlib.sha256(root.joinpath("dataset.json").read_bytes())
    for p in sorted(root.glob("*/*.png")):
        with Image.open(p) as im:
            d.update(f"{p.relative_to(root)}:{im.mode}".encode())
            d.update(np.asarray(im).tobytes())
    return d.hexdigest()[:16]


def _grid_digest(path, label_w: int) -> str:
    """Digest of a preview grid right of its label column (the labels' font is Pillow's)."""
    with Image.open(path) as im:
        return _digest(np.asarray(im)[:, label_w:], np.array(im.size))


def test_demo_renders_are_pinned():
    imgs = [render_face(np.random.default_rng([5, s, v]), s, r, version=v)
            for v in (1, 2, 3) for s in range(4) for r in (16, 32)]
    assert imgs[5][7, 9].tolist() == [16, 12, 10]
    assert _digest(*imgs) == "abb80d51ce7a2b9b"


def test_depth_renders_are_pinned():
    imgs = [render_depth_face(np.random.default_rng([5, e]), e, r) for e in range(4) for r in (16, 32)]
    assert imgs[3][10, 4].tolist() == [27]
    assert _digest(*imgs) == "987f7768811203b3"


def test_written_demo_set_and_preview_are_pinned(tmp_path):
    out = tmp_path / "demo"
    info = write_demo_dataset(out, 2, 16, seed=4, classes=("severe", "healthy"), progress=False)
    assert info["rendered"] == 4 and info["path"] == str(out)
    assert _set_digest(out) == "76860b6f4c440c82"
    assert _grid_digest(write_preview(out, columns=3, cell=24), 110) == "cd285587cd0054d4"


def test_written_depth_set_and_preview_are_pinned(tmp_path):
    out = tmp_path / "depth"
    assert write_depth_dataset(out, 2, 16, seed=4, progress=False) == out
    assert json.loads((out / "dataset.json").read_text())["channels"] == 1
    assert _set_digest(out) == "f719a58f2cc497f0"
    assert _grid_digest(out / "preview.png", 80) == "373dc0ffd7dc7e30"
