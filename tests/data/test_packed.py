"""Packed datasets (jaxgen.data.pack writes, jaxgen.data.packed reads): the format, its content
hash, refusals, and streamed training batches that equal the in-RAM ones, each process reading
only its own rows.

No model compile but the toy loop's (moments): every check packs a dozen 8 px PNGs."""
import hashlib

import ml_collections
import numpy as np
import optax
import pytest
from PIL import Image

from jaxgen.commands.common import run_main
from jaxgen.commands.pack import main
from jaxgen.data import PackedImages, load_dataset, load_image_folder, summary_line
from jaxgen.data import folder as folder_lib
from jaxgen.data.folder import DatasetError
from jaxgen.data.nvidia_writer import write_nvidia_dataset
from jaxgen.data.pack import pack_arrays, pack_dataset
from jaxgen.data.packed import is_packed, load_packed, read_meta
from jaxgen.errors import OutputError
from jaxgen.harness import loop
from jaxgen.harness.batches import batch_at_step, batch_indices, process_rows
from jaxgen.harness.checkpoint import restore_latest_raw
from jaxgen.harness.schedule import Schedule
from class_folders import write_class_folders
from toy_experiment import RES, ToyExperiment, no_tensorboard  # noqa: F401 (fixture)

CLASSES = ("healthy", "mild", "severe")


@pytest.fixture
def folder(tmp_path):
    """12 random 8 px images in 3 class folders (one grayscale, one 16x8: converted and cropped);
    (path, the folder loader's dataset)."""
    src = tmp_path / "src"
    rng = write_class_folders(src, CLASSES)
    Image.fromarray(rng.integers(0, 256, (8, 8), np.uint8)).save(src / "mild" / "mild_gray.png")
    Image.fromarray(rng.integers(0, 256, (8, 16, 3), np.uint8)).save(src / "severe" / "severe_wide.png")
    with pytest.warns(UserWarning):
        return src, folder_lib.load_image_folder(src, 8, 3, cache_dir=None)


def test_pack_writes_counts_names_summary_and_reads_back_the_loaders_pixels(folder, tmp_path):
    src, ref = folder
    out = pack_dataset(src, tmp_path / "pack", 8)
    meta = read_meta(out)
    assert is_packed(out) and meta["num_images"] == 14 and meta["class_names"] == list(CLASSES)
    assert meta["counts"] == {"healthy": 4, "mild": 5, "severe": 5}
    assert [s["rows"] for s in meta["shards"]] == [14] and meta["encoding"] == "raw"
    for s in meta["shards"]:      # each shard's hash is its file's
        assert s["sha256"] == hashlib.sha256((out / s["file"]).read_bytes()).hexdigest()
    # the summary is the loader's (sizes, conversions), so the data summary line says the same
    assert meta["summary"] == ref.summary
    assert meta["summary"]["conversions"]["grayscale->RGB"]["count"] == 1
    ds = load_packed(out, 8, 3, stream="always")
    images = ds.images
    assert isinstance(images, PackedImages) and images.shape == (14, 8, 8, 3) and len(images) == 14
    np.testing.assert_array_equal(ds.labels, ref.labels)
    assert list(ds.paths) == ref.paths and ds.paths[-1] == ref.paths[-1]
    np.testing.assert_array_equal(images[3], ref.images[3])
    np.testing.assert_array_equal(images[-1], ref.images[-1])
    np.testing.assert_array_equal(images[2:9:3], ref.images[2:9:3])
    idx = np.array([7, 0, 7, 13, -2])
    before = images.rows_read
    np.testing.assert_array_equal(images[idx], ref.images[idx])
    assert images.rows_read - before == 4 and images.last_read.tolist() == [0, 7, 12, 13]
    np.testing.assert_array_equal(images[ref.labels == 1], ref.images[ref.labels == 1])
    np.testing.assert_array_equal(np.asarray(images), ref.images)
    sub = images.subset([5, 1, 9])
    np.testing.assert_array_equal(sub[[2, 0]], ref.images[[9, 5]])
    assert sub.content_key() != images.content_key() and len(sub) == 3
    with pytest.raises(IndexError, match="out of range for 14 images"):
        images[[14]]
    line = summary_line(ds.summary)
    assert line.startswith("14 images 8px x3, 3 classes (healthy 4, mild 5, severe 5)")
    assert "streamed from 1 raw shard file, raw" in line


def test_raw_and_png_give_one_content_hash_and_the_same_images(folder, tmp_path):
    src, ref = folder
    raw = read_meta(pack_dataset(src, tmp_path / "raw", 8, shard_bytes=5 * 8 * 8 * 3))
    png = read_meta(pack_dataset(src, tmp_path / "png", 8, encoding="png", shard_bytes=1000))
    assert [s["rows"] for s in raw["shards"]] == [5, 5, 4]     # a shard closes at 5 raw images
    assert len(png["shards"]) > 1 and sum(s["rows"] for s in png["shards"]) == 14
    h = hashlib.sha256(b"jaxgen-packed-content 8 8 3\n")
    for img in ref.images:
        h.update(img.tobytes())
    h.update(ref.labels.astype("<i4").tobytes())
    assert raw["content_sha256"] == png["content_sha256"] == h.hexdigest()
    streamed = load_packed(tmp_path / "png", 8, 3, stream="always").images
    order = np.random.default_rng(1).permutation(14)
    np.testing.assert_array_equal(streamed[order], ref.images[order])     # across the shards
    # read_rows mirrors where asked, in either encoding, across shards and with a repeated row
    idx, flip = np.array([13, 0, 6, 13, 2]), np.array([True, False, True, False, True])
    want = np.where(flip[:, None, None, None], ref.images[idx][:, :, ::-1], ref.images[idx])
    for enc in ("raw", "png"):
        images = load_packed(tmp_path / enc, 8, 3, stream="always").images
        np.testing.assert_array_equal(images.read_rows(idx, flip), want)
        assert images.rows_read == 4                                      # 13 read once
        np.testing.assert_array_equal(images.read_rows(idx[:3], flip[:3]), want[:3])  # no repeats
    assert sorted(p.suffix for p in (tmp_path / "raw").iterdir() if p.name.startswith("shard")) == [".raw"] * 3
    with open(tmp_path / "raw" / raw["shards"][1]["file"], "ab") as f:   # a damaged flat shard
        f.write(b"x")
    with pytest.raises(DatasetError, match="not the 960 of its rows"):
        load_packed(tmp_path / "raw", 8, 3, stream="always").images[7]


def test_nvidia_zip_packs_as_its_loader_reads_it(folder, tmp_path):
    _, ref = folder
    z = write_nvidia_dataset(ref.images, ref.labels, ref.class_names, tmp_path / "x.zip")
    out = pack_dataset(z, tmp_path / "pack", 8)
    ds = load_dataset(dict(source="folder", path=str(out), resolution=8, stream="never"))
    want = load_dataset(dict(source="folder", path=str(z), resolution=8, cache_dir=None))
    assert isinstance(ds.images, np.ndarray) and ds.class_names == list(CLASSES)
    np.testing.assert_array_equal(ds.images, want.images)
    np.testing.assert_array_equal(ds.labels, want.labels)
    assert ds.summary["source"] == "nvidia" and ds.summary["labels"] == "dataset.json"
    assert "held in memory (read from 1 raw shard file, raw" in summary_line(ds.summary)


def test_out_is_refused_unless_new_empty_or_an_earlier_pack_and_src_is_checked_first(folder, tmp_path):
    src, _ = folder
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(OutputError, match="not empty and was not written by jaxgen"):
        pack_dataset(src, mine, 8)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep"
    with pytest.raises(DatasetError, match="dataset folder not found"):
        pack_dataset(tmp_path / "nope", tmp_path / "out", 8)
    assert not (tmp_path / "out").exists()
    out = pack_dataset(src, tmp_path / "out", 8)           # an earlier pack is replaced
    pack_dataset(src, out, 8, encoding="png")
    assert read_meta(out)["encoding"] == "png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "out", "src"]   # no temp folder left
    (src / "mild" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="1 of 15 image.*broken.png.*skip_corrupt"):
        pack_dataset(src, out, 8)
    assert read_meta(out)["encoding"] == "png" and sorted(p.name for p in tmp_path.iterdir()) == ["mine", "out", "src"]
    only_bad = tmp_path / "only_bad" / "mild"
    only_bad.mkdir(parents=True)
    (only_bad / "broken.png").write_bytes(b"not a png")       # skip_corrupt would leave nothing
    with pytest.raises(DatasetError, match=r"none of the 1 image\(s\) under .*only_bad could be read"):
        pack_dataset(only_bad.parent, tmp_path / "none", 8, skip_corrupt=True)
    assert not (tmp_path / "none").exists()
    with pytest.raises(DatasetError, match=r"packed at 8px x3 but 16px x3 was asked.*resolution=8"):
        load_dataset(dict(source="folder", path=str(out), resolution=16))


def test_command_line_prints_progress_and_loaders_dispatch(folder, tmp_path, capsys):
    src, ref = folder
    assert run_main(lambda: main([str(src), str(tmp_path / "p"), "--resolution", "8", "--encoding", "png"])) == 0
    text = capsys.readouterr().out
    assert "pack: images to" in text and "14/14 (100%)" in text and "/s" in text and "wrote" in text
    ds = load_image_folder(tmp_path / "p", 8, 3, stream="always")    # the folder entry reads packs
    assert isinstance(ds.images, PackedImages)
    np.testing.assert_array_equal(ds.images[:], ref.images)


def test_streamed_batches_equal_in_ram_and_each_process_reads_only_its_rows(folder, tmp_path):
    src, ref = folder
    streamed = load_packed(pack_dataset(src, tmp_path / "p", 8), 8, 3, stream="always")
    B, seed = 6, 5
    procs = [streamed.images.subset(np.arange(14)) for _ in range(2)]   # one reader (counter) per process
    for step in range(7):          # 42 rows: three epochs of 14, batches straddle them
        want = batch_at_step(ref.images, ref.labels, step, B, seed, mirror=True)
        got = batch_at_step(streamed.images, streamed.labels, step, B, seed, mirror=True)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        idx = batch_indices(14, B, seed, step)
        parts = []
        for p, images in enumerate(procs):
            before = images.rows_read
            parts.append(batch_at_step(images, streamed.labels, step, B, seed, mirror=True, process=(p, 2)))
            lo, hi = process_rows(B, p, 2)
            assert images.last_read.tolist() == sorted(set(idx[lo:hi].tolist()))   # its own rows only
            assert images.rows_read - before == len(set(idx[lo:hi].tolist()))
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), want[0])   # the joint batch
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), want[1])
    assert procs[0].rows_read + procs[1].rows_read == 42 - _repeats(B, seed, 7)
    with pytest.raises(ValueError, match="cannot be split into 4 equal"):
        process_rows(6, 0, 4)


def _repeats(batch, seed, steps):
    """Rows that repeat within one process's slice of a batch (read once per call)."""
    out = 0
    for s in range(steps):
        idx = batch_indices(14, batch, seed, s)
        for p in range(2):
            lo, hi = process_rows(batch, p, 2)
            out += (hi - lo) - len(set(idx[lo:hi].tolist()))
    return out


class StreamToy(ToyExperiment):
    """The harness's toy regression on the 14 images of the packed (or in-RAM) fixture, as
    grayscale 4 px; records the batches the loop fed."""

    def __init__(self, config, workdir):
        ds = load_dataset(dict(source="folder", path=config.path, resolution=RES, channels=1,
                               stream=config.stream, cache_dir=None))
        self.images, self.labels = ds.images, ds.labels
        self.seed, self.num_examples, self.fed = 3, len(ds), []
        self.schedule = Schedule(4, 6, 3, 1, 1, 2)
        self.descriptor = dict(class_names=list(CLASSES), resolution=RES, channels=1, model="toy", model_kwargs={})
        self.tx = optax.adam(0.05)

    def local_batch(self, step, process=(0, 1)):
        img, lab = batch_at_step(self.images, self.labels, step, 4, self.seed, True, process)
        self.fed.append((step, process, img))
        return img, lab.astype(np.float32)


def test_one_process_training_on_a_stream_is_the_in_ram_run(folder, tmp_path):
    src, _ = folder
    with pytest.warns(UserWarning):
        small = folder_lib.load_image_folder(src, RES, 1, cache_dir=None)
    pack = pack_dataset(src, tmp_path / "p", RES, 1)
    runs, exps = {}, []

    class Kept(StreamToy):
        """StreamToy that keeps the experiment the loop builds (in `exps`)."""
        def __init__(self, config, workdir):
            super().__init__(config, workdir)
            exps.append(self)

    for stream in ("always", "never"):
        cfg = ml_collections.ConfigDict(dict(path=str(pack), stream=stream, seed=3))
        res = loop.train(Kept, cfg, tmp_path / stream)
        runs[stream] = (exps[-1], restore_latest_raw(tmp_path / stream)[0], res)
    streamed, in_ram = runs["always"][0], runs["never"][0]
    assert isinstance(streamed.images, PackedImages) and isinstance(in_ram.images, np.ndarray)
    np.testing.assert_array_equal(in_ram.images, small.images)
    assert [(s, p) for s, p, _ in streamed.fed] == [(s, (0, 1)) for s in range(6)]
    for (_, _, a), (_, _, b) in zip(streamed.fed, in_ram.fed):
        np.testing.assert_array_equal(a, b)
    assert streamed.images.rows_read == sum(len(set(batch_indices(14, 4, 3, s).tolist())) for s in range(6))
    np.testing.assert_array_equal(np.asarray(runs["always"][1]["w"]), np.asarray(runs["never"][1]["w"]))
    assert runs["always"][2]["step"] == 6


def test_pack_arrays_writes_the_pack_of_an_iterator_of_images(tmp_path):
    """pack_arrays: 5 images 4 px x3 (48 bytes each) in shards of at most 2 records, labels
    [0, 2, 2, 1, 0]; the content hash is the documented one (shape line, pixels, int32 labels)
    and the same for png; a wrong shape or a label outside the names is refused, naming the row."""
    rng = np.random.default_rng(3)
    imgs = rng.integers(0, 256, (5, 4, 4, 3), np.uint8)
    labels = [0, 2, 2, 1, 0]
    gen = ((imgs[i], labels[i]) for i in range(5))   # consumed once, in order
    out = pack_arrays(gen, tmp_path / "arr", 4, class_names=["a", "b", "c"], total=5, shard_bytes=96)
    meta = read_meta(out)
    assert meta["num_images"] == 5 and meta["counts"] == {"a": 2, "b": 1, "c": 2}
    assert [s["rows"] for s in meta["shards"]] == [2, 2, 1] and meta["encoding"] == "raw"
    want = hashlib.sha256(b"jaxgen-packed-content 4 4 3\n" + imgs.tobytes()
                          + np.asarray(labels, "<i4").tobytes()).hexdigest()
    assert meta["content_sha256"] == want
    assert meta["summary"]["source"] == "arrays" and meta["summary"]["num_images"] == 5
    ds = load_packed(out, 4, 3, stream="always")
    np.testing.assert_array_equal(ds.images[np.arange(5)], imgs)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.paths[3] == "array://3" and ds.class_names == ["a", "b", "c"]
    png = pack_arrays(zip(imgs, labels), tmp_path / "png", 4, encoding="png")
    assert read_meta(png)["content_sha256"] == want and read_meta(png)["class_names"] == ["0", "1", "2"]
    np.testing.assert_array_equal(load_packed(png, 4, 3, stream="never").images, imgs)
    with pytest.raises(DatasetError, match=r"array 1 is uint8 \(4, 4, 1\)"):
        pack_arrays([(imgs[0], 0), (imgs[1][..., :1], 0)], tmp_path / "bad", 4)
    with pytest.raises(DatasetError, match="array 0 has label 3, outside the 3 class names"):
        pack_arrays([(imgs[0], 3)], tmp_path / "bad", 4, class_names=["a", "b", "c"])
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())
