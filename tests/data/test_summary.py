"""The folder loader's data summary: unreadable files (stop or skip, listed), conversions warned
once per kind with counts, source sizes and modes, and the same report from the decoded-image cache."""
import json
import warnings

import numpy as np
import pytest
from PIL import Image

from jaxgen.data import load_dataset, summary_line
from jaxgen.data.folder import DatasetError, load_image_folder


def _corrupt_folder(root):
    """root/a: two good PNGs, a truncated PNG and a text file named .png; root/b: one good PNG."""
    for cls, n in (("a", 2), ("b", 1)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (12, 12), (40 * i, 90, 200)).save(root / cls / f"good{i}.png")
    full = (root / "a" / "good0.png").read_bytes()
    (root / "a" / "truncated.png").write_bytes(full[:len(full) // 2])
    (root / "a" / "notes.png").write_text("this is a text file, not an image\n")
    return root


def test_unreadable_files_stop_the_load_with_one_line_naming_them_and_the_flag(tmp_path):
    root = _corrupt_folder(tmp_path / "data")
    with pytest.raises(DatasetError) as e:
        load_image_folder(root, 8, cache_dir=None)
    msg = str(e.value)
    assert "\n" not in msg and "2 of 5 image(s)" in msg
    assert "a/truncated.png" in msg and "a/notes.png" in msg
    assert "--config.data.skip_corrupt=True" in msg


def test_skip_corrupt_loads_the_rest_and_lists_the_skipped_files(tmp_path):
    root = _corrupt_folder(tmp_path / "data")
    cfg = dict(source="folder", path=str(root), resolution=8, channels=3, skip_corrupt=True,
               cache_dir=str(tmp_path / "cache"))
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        ds = load_dataset(cfg)
    assert len(ds) == 3 and ds.class_names == ["a", "b"]
    s = ds.summary
    assert s["classes"] == {"a": 2, "b": 1} and s["num_images"] == 3
    assert sorted(p["path"].rsplit("/", 1)[-1] for p in s["skipped"]) == ["notes.png", "truncated.png"]
    assert all(p["error"] for p in s["skipped"])
    json.dumps(s)                                    # JSON-able: written to the run folder
    assert "skipped 2 unreadable" in summary_line(s)
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):     # a cache hit reports the same
        again = load_dataset(cfg)
    assert again.summary == s and len(list((tmp_path / "cache").glob("*.npz"))) == 1


def test_conversions_are_warned_once_per_kind_with_counts_and_summarised(tmp_path):
    root = tmp_path / "faces"
    root.mkdir()
    for i in range(3):                                           # a grayscale folder
        Image.fromarray(np.full((16, 16), 60 * i, np.uint8)).save(root / f"gray{i}.png")
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[:4, :4, 3] = 0                                          # some transparent pixels
    Image.fromarray(rgba).save(root / "rgba.png")
    opaque = rgba.copy()
    opaque[..., 3] = 255                                         # alpha, but nothing to flatten
    Image.fromarray(opaque).save(root / "opaque_rgba.png")
    Image.fromarray(np.full((1000, 1), 99, np.uint8)).save(root / "strip.png")   # 1 wide, 1000 tall
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_image_folder(root, 8, channels=3, cache_dir=tmp_path / "cache")
    texts = [str(w.message) for w in caught]
    gray = [t for t in texts if "grayscale" in t]
    assert len(gray) == 1 and gray[0].startswith("4 of 6 image(s)") and "channels=1" in gray[0]
    alpha = [t for t in texts if "transparent" in t]
    assert len(alpha) == 1 and alpha[0].startswith("1 of 6") and "rgba.png" in alpha[0]
    crop = [t for t in texts if "centre-cropped" in t]
    assert len(crop) == 1 and crop[0].startswith("1 of 6") and "strip.png" in crop[0]
    s = ds.summary
    assert s["source_sizes"] == {"16x16 L": 3, "16x16 RGBA": 2, "1x1000 L": 1}
    assert {k: v["count"] for k, v in s["conversions"].items()} == {
        "grayscale->RGB": 4, "alpha flattened": 1, "extreme aspect cropped": 1}
    line = summary_line(s)
    assert "6 images 8px x3" in line and "16x16 L: 3" in line and "1x1000 L: 1" in line
    assert "grayscale->RGB 4" in line
    with warnings.catch_warnings(record=True) as cached:         # cache hit: same warnings, summary
        warnings.simplefilter("always")
        hit = load_image_folder(root, 8, channels=3, cache_dir=tmp_path / "cache")
    assert hit.summary == s and sorted(str(w.message) for w in cached) == sorted(texts)


def test_colour_to_grayscale_is_warned_and_other_sources_get_a_basic_summary(tmp_path):
    (tmp_path / "x").mkdir()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "x" / "red.png")
    with pytest.warns(UserWarning, match=r"1 of 1 image\(s\) .*converted to grayscale"):
        ds = load_image_folder(tmp_path / "x", 8, channels=1, cache_dir=None)
    assert ds.summary["conversions"]["RGB->grayscale"]["count"] == 1
    demo = load_dataset(dict(source="demo", path=str(tmp_path / "demo"), resolution=16,
                             num_per_class=2, progress=False))
    assert demo.summary["classes"] == {name: 2 for name in demo.class_names}
    assert demo.summary["conversions"] == {} and demo.summary["skipped"] == []
