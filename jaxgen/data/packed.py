"""Read a packed dataset ("jaxgen-packed" v1, written by `python -m jaxgen pack`).

Why: the other sources decode every image into one in-RAM array before the first
step, so a dataset larger than memory cannot train. A packed folder holds the
images already prepared (resized, cropped, converted) in ArrayRecord shards, one
record per image, read by index: a training step reads only the rows of its batch
(and with several processes, only the rows of its own slice of the batch).

Layout of a packed folder OUT:

    dataset.json   {format: "jaxgen-packed", version: 1, resolution, channels,
                    encoding: "raw" (uint8 H*W*C bytes) | "png", num_images,
                    class_names, counts (per class), shards: [{file, rows, sha256}],
                    content_sha256 (the decoded pixels and labels in row order: the same
                    images give the same hash in either encoding), summary (the data
                    summary of the source's load)}
    labels.npy     int32 [N]
    paths.txt      the source path of each image, one JSON string per line
    shard-00000-of-00003.raw ...            (raw: flat files, row i at byte i * R*R*C)
    shard-00000-of-00003.array_record ...   (png: ArrayRecord, group_size 1, uncompressed)

`PackedImages` is an array-like over the shards (shape [N, R, R, C], uint8): indexing
with an int, a slice or an index array reads and decodes just those rows, counting them
in `rows_read`; `read_rows(idx, flip)` also mirrors rows as it copies them (the training
batch's flips). Raw rows are read with `os.preadv` straight into the batch array, PNGs
are decoded; either way the work is split over a thread pool. `load_packed` gives an
`ImageDataset` whose images are a `PackedImages` (streamed) or, for a small set, an
in-RAM array (`data.stream`: 'auto' streams above STREAM_ABOVE_BYTES decoded bytes,
'always', 'never'); its summary says which ('packed' key, printed by `summary_line`).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence, Union

import numpy as np
from array_record.python.array_record_module import ArrayRecordReader
from PIL import Image

from jaxgen.data.folder import DatasetError, ImageDataset, check_channels, check_resolution
from jaxgen.errors import ConfigError

FORMAT, VERSION = "jaxgen-packed", 1
META_FILE, LABELS_FILE, PATHS_FILE = "dataset.json", "labels.npy", "paths.txt"
ENCODINGS = ("raw", "png")
STREAM_MODES = ("auto", "always", "never")
STREAM_ABOVE_BYTES = 2 << 30        # 'auto' streams a dataset whose decoded images exceed 2 GiB
READER_OPTIONS = "readahead_buffer_size:0,max_parallelism:0"   # random access (measured fastest)
PathLike = Union[str, os.PathLike]


def shard_suffix(encoding: str) -> str:
    """The shard files' extension: '.raw' (flat fixed-size rows) or '.array_record' (png)."""
    return ".raw" if encoding == "raw" else ".array_record"


def is_packed(path: PathLike) -> bool:
    """True when `path` is a folder whose dataset.json says format 'jaxgen-packed'."""
    f = Path(path).expanduser() / META_FILE
    if not f.is_file():
        return False
    try:
        return json.loads(f.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read_meta(path: PathLike) -> Dict[str, Any]:
    """dataset.json of the packed folder `path`, checked (DatasetError naming what is wrong)."""
    root = Path(path).expanduser()
    try:
        meta = json.loads((root / META_FILE).read_text())
    except (OSError, ValueError) as e:
        raise DatasetError(f"{root / META_FILE} is not readable ({type(e).__name__}); re-pack the "
                           "dataset with python -m jaxgen pack") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise DatasetError(f"{root} is not a {FORMAT} v{VERSION} folder (format {meta.get('format')!r}, "
                           f"version {meta.get('version')!r}); re-pack it with this jaxgen")
    if meta.get("encoding") not in ENCODINGS:
        raise DatasetError(f"{root / META_FILE}: unknown encoding {meta.get('encoding')!r}; re-pack it")
    return meta


def content_hasher(resolution: int, channels: int) -> "hashlib._Hash":
    """The sha256 that `content_sha256` starts from: the image shape, then the pixel bytes of
    each row in order (`update`), then the labels as int32 little-endian bytes."""
    return hashlib.sha256(f"{FORMAT}-content {resolution} {resolution} {channels}\n".encode())


class PackedPaths(Sequence[str]):
    """The source paths of a packed set, read from paths.txt on demand (one int64 offset per
    row in memory, not one Python string)."""

    def __init__(self, file: PathLike):
        self.file = Path(file)
        self._data = np.memmap(self.file, np.uint8, "r") if self.file.stat().st_size else np.zeros(0, np.uint8)
        ends = np.flatnonzero(self._data == ord("\n"))
        self._starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
        self._ends = ends.astype(np.int64)

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i) + (len(self) if int(i) < 0 else 0)
        if not 0 <= i < len(self):
            raise IndexError(f"path index {i} out of range for {len(self)} paths")
        return json.loads(bytes(self._data[self._starts[i]:self._ends[i]]).decode())


class PackedImages:
    """uint8 images [N, R, R, C] read from the shards of a packed folder on demand.

    Indexing works as on a numpy array for an int (one image [R, R, C]), a slice, an int or
    bool index array ([len(index), R, R, C]); each distinct row is read once per call and
    counted in `rows_read` (`last_read`: the sorted rows of the last call). `np.asarray`
    reads everything (for small sets); `chunks` iterates in pieces. `subset(rows)` is a
    view of some rows (as the classifier's train/validation split). Thread-safe: the loop's
    prefetch thread reads while the main thread may read the sample grid.
    """

    ndim, dtype = 4, np.dtype(np.uint8)

    def __init__(self, root: PathLike, meta: Optional[Dict[str, Any]] = None, threads: Optional[int] = None,
                 rows: Optional[np.ndarray] = None, _shared: Optional[Dict[str, Any]] = None):
        self.root = Path(root).expanduser()
        self.meta = read_meta(self.root) if meta is None else meta
        r, c = int(self.meta["resolution"]), int(self.meta["channels"])
        self.encoding, self.item_shape = self.meta["encoding"], (r, r, c)
        self._rows = None if rows is None else np.asarray(rows, np.int64)
        n = int(self.meta["num_images"]) if self._rows is None else len(self._rows)
        self.shape = (n,) + self.item_shape
        threads = int(threads or min(8, os.cpu_count() or 1))
        self._shared = _shared or dict(
            starts=np.cumsum([0] + [int(s["rows"]) for s in self.meta["shards"]]),
            readers=[None] * len(self.meta["shards"]), lock=threading.Lock(), threads=threads,
            pool=ThreadPoolExecutor(threads, thread_name_prefix="jaxgen-packed"))
        self.rows_read, self.last_read = 0, np.zeros(0, np.int64)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))

    @property
    def num_shards(self) -> int:
        return len(self.meta["shards"])

    def subset(self, rows: Sequence[int]) -> "PackedImages":
        """A view of rows `rows` (ints of this array), sharing its readers; its own counter."""
        rows = self._global_rows(self._index(rows))
        return PackedImages(self.root, self.meta, rows=rows, _shared=self._shared)

    def content_key(self) -> str:
        """A short hash of these images (the pack's content hash, and the rows of a subset):
        a cache key (e.g. of FID features of the reals) that reads no pixels."""
        h = hashlib.sha256(self.meta["content_sha256"].encode())
        if self._rows is not None:
            h.update(self._rows.tobytes())
        return h.hexdigest()[:24]

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self._read(self._index(np.asarray([key])))[0]
        if isinstance(key, slice):
            return self._read(np.arange(*key.indices(len(self)), dtype=np.int64))
        if isinstance(key, tuple) or key is Ellipsis:
            raise TypeError("PackedImages takes one index (an int, a slice or an index array), "
                            "not a tuple; index the array it returns for more")
        idx = np.asarray(key)
        if idx.dtype == bool:
            return self._read(self._index(idx))
        return self._read(self._index(idx.reshape(-1))).reshape(idx.shape + self.item_shape)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.read_all()
        return out if dtype is None else out.astype(dtype)

    def read_all(self, chunk: int = 1024) -> np.ndarray:
        """All the images in one in-RAM array [N, R, R, C], filled `chunk` rows at a time."""
        out = np.empty(self.shape, np.uint8)
        for start in range(0, len(self), chunk):
            out[start:start + chunk] = self[start:start + chunk]
        return out

    def __iter__(self) -> Iterator[np.ndarray]:
        for chunk in self.chunks():
            yield from chunk

    def chunks(self, size: int = 1024) -> Iterator[np.ndarray]:
        """The images in order, `size` at a time ([<= size, R, R, C] each): bounded memory."""
        for start in range(0, len(self), size):
            yield self[start:start + size]

    def _index(self, idx: Any) -> np.ndarray:
        """int64 positions in [0, len) of an int or bool index array (negatives counted from the end)."""
        idx = np.asarray(idx)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise IndexError(f"boolean index of shape {idx.shape} for {len(self)} images")
            return np.flatnonzero(idx).astype(np.int64)
        if idx.size and idx.dtype.kind not in "iu":
            raise IndexError(f"PackedImages index must be integers, got {idx.dtype}")
        idx = idx.astype(np.int64).reshape(-1)
        idx = np.where(idx < 0, idx + len(self), idx)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"index {int(idx.max() if idx.max() >= len(self) else idx.min())} is out of "
                             f"range for {len(self)} images")
        return idx

    def _global_rows(self, idx: np.ndarray) -> np.ndarray:
        return idx if self._rows is None else self._rows[idx]

    def read_rows(self, idx: Any, flip: Optional[np.ndarray] = None) -> np.ndarray:
        """self[idx] for an index array, with row k mirrored along the width where flip[k]
        (bool [len(idx)]): the flip is done in the copy, so a mirrored batch costs no extra pass."""
        idx = self._index(idx)
        flip = None if flip is None else np.asarray(flip, bool).reshape(-1)
        if flip is not None and len(flip) != len(idx):
            raise ValueError(f"flip has {len(flip)} flags for {len(idx)} rows")
        return self._read(idx, flip)

    def _read(self, idx: np.ndarray, flip: Optional[np.ndarray] = None) -> np.ndarray:
        """Images [len(idx), R, R, C] of positions idx (int64, in range), rows mirrored where
        flip: each distinct row read once, in parallel chunks, straight into the output."""
        wanted = self._global_rows(idx)
        rows, inverse = np.unique(wanted, return_inverse=True)
        repeats = len(rows) != len(idx)
        # no repeats (a batch): read in place, flipped; repeats: read each once, then spread them
        dest_rows, dest_flip = (rows, None) if repeats else (wanted, flip)
        out = np.empty((len(dest_rows),) + self.item_shape, np.uint8)
        sh = self._shared
        shard = np.searchsorted(sh["starts"], dest_rows, side="right") - 1
        jobs = [(int(s), at) for s in np.unique(shard)
                for at in np.array_split(np.flatnonzero(shard == s), sh["threads"]) if len(at)]
        list(sh["pool"].map(lambda job: self._fill(out, dest_rows, dest_flip, *job), jobs))
        self.rows_read += len(rows)
        self.last_read = rows
        if repeats:
            out = out[inverse.reshape(-1)]
            if flip is not None:
                for k in np.flatnonzero(flip):
                    out[k] = out[k, :, ::-1]
        return out

    def _fill(self, out: np.ndarray, rows: np.ndarray, flip: Optional[np.ndarray], shard: int,
              at: np.ndarray) -> None:
        """out[k] = image rows[k] (mirrored where flip[k]) for k in `at`, all in shard `shard`."""
        local = (rows[at] - self._shared["starts"][shard]).tolist()
        flips = [False] * len(at) if flip is None else flip[at].tolist()
        if self.encoding == "raw":
            fd, size, scratch = self._reader(shard), int(np.prod(self.item_shape)), None
            for k, r, f in zip(at, local, flips):
                if f and scratch is None:
                    scratch = np.empty(self.item_shape, np.uint8)
                dst = scratch if f else out[k]
                if os.preadv(fd, [memoryview(dst.reshape(-1))], r * size) != size:
                    raise self._damaged(shard, f"fewer than {size} bytes at row {r}")
                if f:
                    _mirror_into(out[k], scratch)
            return
        for k, b, f in zip(at, self._reader(shard).read(local), flips):
            img = _decode_png(b)
            if img.shape != self.item_shape:
                raise self._damaged(shard, f"an image of shape {img.shape}, not {self.item_shape}")
            if f:
                _mirror_into(out[k], img)
            else:
                out[k] = img

    def _damaged(self, shard: int, what: str) -> DatasetError:
        return DatasetError(f"{self.root / self.meta['shards'][shard]['file']} holds {what}: the pack is "
                            "damaged; re-pack the dataset with python -m jaxgen pack")

    def _reader(self, shard: int) -> Any:
        """The shard's reader, opened once: a file descriptor of a raw shard (`os.preadv` is
        thread-safe), an ArrayRecordReader of a png one (thread-safe too)."""
        sh = self._shared
        if sh["readers"][shard] is None:
            with sh["lock"]:
                if sh["readers"][shard] is None:
                    sh["readers"][shard] = self._open(shard)
        return sh["readers"][shard]

    def _open(self, shard: int) -> Any:
        f = self.root / self.meta["shards"][shard]["file"]
        if not f.is_file():
            raise DatasetError(f"{f} is missing: the pack {self.root} is incomplete; re-pack "
                               "the dataset with python -m jaxgen pack")
        if self.encoding != "raw":
            return ArrayRecordReader(str(f), READER_OPTIONS)
        want = int(self.meta["shards"][shard]["rows"]) * int(np.prod(self.item_shape))
        if f.stat().st_size != want:
            raise self._damaged(shard, f"{f.stat().st_size} bytes, not the {want} of its rows")
        return os.open(f, os.O_RDONLY)


def _mirror_into(dst: np.ndarray, src: np.ndarray) -> None:
    """dst[:, x] = src[:, W-1-x] for uint8 [H, W, C], one channel at a time (a strided copy of
    single bytes is several times faster than one of C-byte pixels)."""
    for c in range(src.shape[-1]):
        dst[:, :, c] = src[:, ::-1, c]


def _decode_png(b: bytes) -> np.ndarray:
    """A PNG record as uint8 [H, W, C] (PIL releases the GIL while it inflates)."""
    with Image.open(io.BytesIO(b)) as img:
        arr = np.asarray(img, np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def take_rows(images: Any, rows: Sequence[int]) -> Any:
    """images[rows] for an in-RAM array; a streamed view (`PackedImages.subset`) for a packed one,
    so that splitting a large set (e.g. train/validation) reads nothing."""
    return images.subset(rows) if isinstance(images, PackedImages) else images[rows]


def storage_line(meta: Dict[str, Any], streamed: bool) -> str:
    """How a packed set is read, for its data summary: 'streamed from 3 raw shard files, raw,
    12.0 GiB decoded' or 'held in memory (read from 1 ArrayRecord shard, png, 3.0 MiB decoded)'."""
    n = len(meta["shards"])
    size = int(meta["num_images"]) * int(meta["resolution"]) ** 2 * int(meta["channels"])
    amount = f"{size / 2 ** 30:.1f} GiB" if size >= 2 ** 30 else f"{size / 2 ** 20:.1f} MiB"
    kind = "raw shard file" if meta["encoding"] == "raw" else "ArrayRecord shard"
    what = f"{n} {kind}{'s' if n != 1 else ''}, {meta['encoding']}, {amount} decoded"
    return f"streamed from {what}" if streamed else f"held in memory (read from {what})"


def _streams(stream: Any, nbytes: int) -> bool:
    """Whether a packed set of `nbytes` decoded bytes is streamed under `data.stream`."""
    mode = str(stream).lower() if not isinstance(stream, bool) else ("always" if stream else "never")
    if mode not in STREAM_MODES:
        raise ConfigError(f"config.data.stream={stream!r}: use 'auto' (stream above "
                          f"{STREAM_ABOVE_BYTES >> 30} GiB), 'always' or 'never'")
    return mode == "always" or (mode == "auto" and nbytes > STREAM_ABOVE_BYTES)


def load_packed(path: PathLike, resolution: int, channels: int = 3, require_labels: bool = False,
                min_classes: int = 1, stream: Any = "auto", threads: Optional[int] = None) -> ImageDataset:
    """The packed dataset at `path` as an ImageDataset: images a `PackedImages` (streamed) or
    uint8 [N, R, R, C] in memory (see `_streams`), labels int32 [N], class names, paths (a
    `PackedPaths`) and the pack's summary with 'packed': how it is read (`storage_line`).

    resolution/channels must be the pack's (DatasetError naming both and the fix);
    require_labels/min_classes as in `load_image_folder`.
    """
    root = Path(path).expanduser()
    meta = read_meta(root)
    resolution, channels = check_resolution(resolution, power_of_two=False), check_channels(channels)
    if (resolution, channels) != (int(meta["resolution"]), int(meta["channels"])):
        raise DatasetError(f"{root} is packed at {meta['resolution']}px x{meta['channels']} but "
                           f"{resolution}px x{channels} was asked: set --config.data.resolution="
                           f"{meta['resolution']} --config.data.channels={meta['channels']}, or re-pack "
                           f"it with python -m jaxgen pack --resolution {resolution} --channels {channels}")
    names = list(meta["class_names"])
    need = max(int(min_classes), 2 if require_labels else 1)
    if len(names) < need:
        raise DatasetError(f"{root} has {len(names)} class(es) ({', '.join(names)}) but {need} are required "
                           "for labelled (conditional) training: pack class sub-folders, or train unconditionally")
    labels = np.load(root / LABELS_FILE, allow_pickle=False).astype(np.int32)
    images = PackedImages(root, meta, threads)
    if len(labels) != len(images):
        raise DatasetError(f"{root / LABELS_FILE} has {len(labels)} labels for {len(images)} images; re-pack it")
    streamed = _streams(stream, images.nbytes)
    data = images if streamed else images.read_all()
    summary = dict(meta["summary"], packed=storage_line(meta, streamed), pack=str(root))
    return ImageDataset(data, labels, names, PackedPaths(root / PATHS_FILE), summary)
