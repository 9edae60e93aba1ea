"""Pack a dataset once into random-access shards, for datasets larger than memory.

    python -m jaxgen pack SRC OUT --resolution R [--channels C] [--encoding raw|png]
    python -m jaxgen pack mnist OUT --source tfds --resolution 32 --split train --data_dir DIR

SRC: an image folder (class sub-folders), NVIDIA's dataset_tool.py zip or folder, or
(--source tfds) a prepared TFDS dataset name. Each image is prepared as the loaders
prepare it (`jaxgen.data.folder.prepare_image`: EXIF rotation, alpha over white,
`channels`, short side to R, centre crop) and written as one row: 'raw' (R*R*C bytes,
the default: flat shard files of fixed-size rows, read by offset straight into the
batch, no decoding) or 'png' (about half the bytes: ArrayRecord shards, one record per
image, decoded in threads when read). The layout and the reader: `jaxgen.data.packed`;
train on it with --config.data.path=OUT (source 'folder').

Why these choices (measured on 2 CPU cores, warm page cache): ArrayRecord random reads of
64 indices at 64 px take 1.2 ms uncompressed (55k images/s with the copy) against 3.3 ms
for its default zstd and 16 ms for PNG decoded in one thread, so records are stored
uncompressed. At 1024 px, though, ArrayRecord hands back each 3 MiB record as a new
bytes object, and its reads ran at about 200 images/s against 3,200 for `os.preadv` of a
flat file straight into the batch array (bench/RESULTS.md, issue 29): raw rows, which all
have one size, need no record framing, so they live in flat files; PNGs (variable size)
stay in ArrayRecord.

Source images are read and decoded in chunks (of CHUNK files), never all at once, so
packing needs memory for one chunk and one record per row of labels/paths. OUT must
be new, empty or an earlier pack (its marker); everything is written to a hidden
folder beside it and renamed to OUT at the end, so nothing half-written looks
finished. Progress lines give the count, rate and ETA. Bad input is a one-line
DatasetError naming it (all unreadable files at once, or --skip_corrupt).
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter

from jaxgen.data import folder as folder_lib
from jaxgen.data import nvidia_format, nvidia_writer
from jaxgen.data.folder import (CONVERSIONS, DatasetError, ImageDataset, basic_summary, check_channels,
                                check_resolution, scan_image_folder, summary_line)
from jaxgen.data.nvidia_archive import Archive
from jaxgen.data.nvidia_format import is_nvidia_dataset
from jaxgen.data.packed import (ENCODINGS, FORMAT, LABELS_FILE, META_FILE, PATHS_FILE, VERSION, content_hasher,
                                is_packed, shard_suffix)
from jaxgen.data.tfds_source import open_tfds
from jaxgen.utils.logger import logger
from jaxgen.utils.outputs import check_output, claim_output
from jaxgen.utils.progress import Progress

KIND = "packed_dataset"              # marker kind of a pack folder
WRITER_OPTIONS = "group_size:1,uncompressed"   # one record per group: random access by index
SHARD_BYTES = 1 << 30                # a shard is closed once it holds this many record bytes
CHUNK = 256                          # source files decoded (in threads) at a time
# One prepared image: (array [R, R, C] or None, label, path, source_info or None, error or None)
Item = Tuple[Optional[np.ndarray], int, str, Optional[Tuple[str, Tuple[str, ...]]], Optional[str]]
PathLike = Union[str, os.PathLike]


class _Tally:
    """The data summary of a pack, counted image by image (as `folder.folder_summary` counts a
    whole load): source sizes, conversions with 3 examples each, skipped files."""

    def __init__(self, root: Optional[Path]):
        self.root, self.sizes, self.conversions, self.bad = root, collections.Counter(), {}, []

    def add(self, path: str, info: Optional[Tuple[str, Tuple[str, ...]]]) -> None:
        if info is None:
            return
        key, done = info
        self.sizes[key] += 1
        for kind in done:
            c = self.conversions.setdefault(kind, dict(count=0, examples=[]))
            c["count"] += 1
            if len(c["examples"]) < 3:
                c["examples"].append(os.path.relpath(path, self.root))

    def summary(self, labels: np.ndarray, names: List[str], resolution: int, channels: int,
                source: str) -> Dict[str, Any]:
        """The summary dict the source's loader would give (`basic_summary`, and for files
        `folder_summary`'s root, source_sizes, conversions, skipped)."""
        shape_only = np.broadcast_to(np.zeros((), np.uint8), (len(labels), resolution, resolution, channels))
        out = basic_summary(ImageDataset(shape_only, labels, names, [""] * len(labels)), source)
        if self.root is None:
            return out
        out.update(root=str(self.root), source_sizes=dict(self.sizes.most_common()),
                   conversions={k: self.conversions[k] for k in CONVERSIONS if k in self.conversions},
                   skipped=[dict(path=p, error=e) for p, e in self.bad])
        return out


class _Source:
    """An opened, checked source: `total` images, `items()` prepared one by one (in order),
    `names(labels)` the class names, `source` and `root` for the summary, `extra` for it."""

    def __init__(self, total: int, items, names, source: str, root: Optional[Path], extra=None, close=None):
        self.total, self.items, self.names, self.source, self.root = total, items, names, source, root
        self.extra, self.close = dict(extra or {}), close or (lambda: None)


def _decoded(jobs: List[Any], decode, threads: int) -> Iterator[Any]:
    """decode(job) of every job, CHUNK at a time in `threads` threads, in order."""
    with ThreadPoolExecutor(threads) as pool:
        for start in range(0, len(jobs), CHUNK):
            yield from pool.map(decode, jobs[start:start + CHUNK])


def _folder_source(path: Path, resolution: int, channels: int, threads: int) -> _Source:
    """Class folders (`scan_image_folder`: listed and checked now, decoded when iterated)."""
    files, names = scan_image_folder(path)

    def items() -> Iterator[Item]:
        for (p, label), (arr, info, err) in zip(files, _decoded(
                files, lambda it: folder_lib._decode(it[0], resolution, channels), threads)):
            yield arr, label, p, info, err
    return _Source(len(files), items, lambda labels: names, "folder", path)


def _nvidia_source(path: Path, resolution: int, channels: int, threads: int) -> _Source:
    """NVIDIA's zip or folder: names, labels and every entry's size checked now (zip bombs),
    files read and decoded CHUNK at a time when iterated; one stored image size required."""
    arch = Archive(path)
    images = arch.image_names()
    if not images:
        arch.close()
        raise DatasetError(f"no images found in {arch.path} (looked for PNG/JPEG/... files at any depth); "
                           "pass a zip written by NVIDIA's dataset_tool.py or jaxgen's export")
    labels, names, origin = nvidia_format._labels_and_names(arch, images)
    for n in images:
        arch.check(n)

    def items() -> Iterator[Item]:
        kept, sizes = [], []
        jobs = list(zip(images, labels.tolist()))
        decode = lambda job: nvidia_format._decode(arch.read(job[0]), resolution, channels)  # noqa: E731
        for (name, label), (arr, info, size, err) in zip(jobs, _decoded(jobs, decode, threads)):
            if err is None:
                kept.append(name)
                sizes.append(size)
            yield arr, label, str(arch.path / name), info, err
        nvidia_format._check_sizes(arch, kept, sizes)
    return _Source(len(images), items, lambda got: names, "nvidia", arch.path, dict(labels=origin), arch.close)


def _tfds_source(cfg: Dict[str, Any], resolution: int, channels: int) -> _Source:
    """A prepared TFDS split (`open_tfds`), read example by example."""
    split = open_tfds(cfg["name"], cfg.get("split", "train"), resolution, channels, cfg.get("data_dir") or None,
                      cfg.get("image_key", "image"), cfg.get("label_key", "label"), cfg.get("max_examples"))
    total = max(int(split.ds.cardinality()), 0)        # < 0: unknown (no ETA)

    def items() -> Iterator[Item]:
        for i, (img, label) in enumerate(split.examples()):
            yield img, label, split.path(i), None, None
    return _Source(total, items, split.class_names, "tfds", None)


def open_source(src: Union[PathLike, Dict[str, Any]], resolution: int, channels: int,
                threads: Optional[int] = None) -> _Source:
    """The source `src` names, checked before anything is written: a path (image folder, NVIDIA
    zip or folder) or a config like `load_dataset`'s (source 'folder' with path, or 'tfds')."""
    cfg = dict(src) if isinstance(src, dict) else dict(source="folder", path=os.fspath(src))
    threads = threads or min(8, os.cpu_count() or 1)
    if cfg.get("source", "folder") == "tfds":
        return _tfds_source(cfg, resolution, channels)
    if cfg.get("source", "folder") != "folder":
        raise DatasetError(f"pack reads source 'folder' (image folders, NVIDIA zips) or 'tfds', not "
                           f"{cfg.get('source')!r}")
    path = Path(cfg["path"]).expanduser()
    if is_packed(path):
        raise DatasetError(f"SRC {path} is already packed; train on it with --config.data.path={path}")
    if is_nvidia_dataset(path):
        return _nvidia_source(path, resolution, channels, threads)
    return _folder_source(path, resolution, channels, threads)


class _ShardWriter:
    """Records into folder/shard-NNNNN files of about `shard_bytes` each: raw images as flat
    files of fixed-size rows (`.raw`: row i at byte i * R*R*C, read straight into the batch),
    PNGs as ArrayRecord files (`.array_record`); `finish` names them shard-NNNNN-of-MMMMM.<ext>
    and returns [{file, rows, sha256}]."""

    def __init__(self, folder: Path, shard_bytes: int, encoding: str = "png"):
        self.folder, self.shard_bytes = folder, max(int(shard_bytes), 1)
        self.ext = shard_suffix(encoding)
        self.done: List[Tuple[Path, int]] = []
        self.writer, self.path, self.rows, self.bytes = None, None, 0, 0

    def write(self, record: bytes) -> None:
        if self.writer is None:
            self.path = self.folder / f"shard-{len(self.done):05d}{self.ext}"
            self.writer = (open(self.path, "wb") if self.ext == ".raw"
                           else ArrayRecordWriter(str(self.path), WRITER_OPTIONS))
            self.rows, self.bytes = 0, 0
        self.writer.write(record)
        self.rows, self.bytes = self.rows + 1, self.bytes + len(record)
        if self.bytes >= self.shard_bytes:
            self._close()

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.done.append((self.path, self.rows))
            self.writer = None

    def finish(self) -> List[Dict[str, Any]]:
        self._close()
        shards = []
        for i, (path, rows) in enumerate(self.done):
            final = path.with_name(f"shard-{i:05d}-of-{len(self.done):05d}{self.ext}")
            path.rename(final)
            shards.append(dict(file=final.name, rows=rows, sha256=_file_sha256(final)))
        return shards


def _file_sha256(path: Path, block: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(block), b""):
            h.update(b)
    return h.hexdigest()


def _record(img: np.ndarray, encoding: str) -> bytes:
    """One image [R, R, C] as a record: its bytes (raw) or a PNG (zlib level 1: fast to write;
    the size is within a few percent of level 6 for photos)."""
    if encoding == "raw":
        return np.ascontiguousarray(img).tobytes()
    return nvidia_writer._png_bytes(img, 1)


def _write_rows(source: _Source, tmp: Path, resolution: int, channels: int, encoding: str, shard_bytes: int,
                skip_corrupt: bool, progress: Progress) -> Dict[str, Any]:
    """Write every image of `source` into shards in `tmp`, its paths into paths.txt and its
    labels into labels.npy; returns dataset.json's fields. Unreadable files raise once all were
    tried (one DatasetError listing them), unless skip_corrupt."""
    shards, tally = _ShardWriter(tmp, shard_bytes, encoding), _Tally(source.root)
    h, labels = content_hasher(resolution, channels), []
    with open(tmp / PATHS_FILE, "w", encoding="utf-8") as paths:
        for arr, label, path, info, err in progress.iterate(source.items()):
            if err is not None:
                tally.bad.append((path, err))
                continue
            shards.write(_record(arr, encoding))
            h.update(np.ascontiguousarray(arr).data)
            labels.append(label)
            paths.write(json.dumps(path) + "\n")
            tally.add(path, info)
    if tally.bad and not skip_corrupt:
        raise folder_lib._unreadable_error(source.root or Path("."), tally.bad, len(tally.bad) + len(labels))
    if tally.bad and not labels:
        raise folder_lib._none_readable_error(source.root or Path("."), tally.bad)
    if not labels:
        raise DatasetError(f"the source {source.root or ''} has no images; nothing was packed")
    labels = np.asarray(labels, np.int32)
    names = list(source.names(labels.tolist()))
    h.update(labels.astype("<i4").tobytes())
    np.save(tmp / LABELS_FILE, labels)
    summary = dict(tally.summary(labels, names, resolution, channels, source.source), **source.extra)
    return dict(format=FORMAT, version=VERSION, resolution=resolution, channels=channels, encoding=encoding,
                num_images=len(labels), class_names=names, counts=summary["classes"],
                shards=shards.finish(), content_sha256=h.hexdigest(), summary=summary)


def _publish(tmp: Path, out: Path) -> None:
    """Put the finished `tmp` in place of `out` (new, empty, or an earlier pack: moved aside, then
    deleted once the new one is in place)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def pack_dataset(src: Union[PathLike, Dict[str, Any]], out: PathLike, resolution: int, channels: int = 3,
                 encoding: str = "raw", shard_bytes: int = SHARD_BYTES, skip_corrupt: bool = False,
                 threads: Optional[int] = None, progress_every: float = 10.0) -> Path:
    """Pack `src` (see `open_source`) into the new folder `out` (see the module docstring);
    returns `out`. OUT and SRC are checked before anything is created."""
    resolution, channels = check_resolution(resolution, power_of_two=False), check_channels(channels)
    if encoding not in ENCODINGS:
        raise DatasetError(f"--encoding {encoding!r}: use 'raw' (fastest to read) or 'png' (smaller)")
    out = check_output(out, KIND, "OUT")
    source = open_source(src, resolution, channels, threads)
    return _write_pack(source, out, resolution, channels, encoding, shard_bytes, skip_corrupt, progress_every)


def _array_source(items: Iterable[Tuple[np.ndarray, int]], resolution: int, channels: int,
                  class_names: Optional[Sequence[str]], total: Optional[int]) -> _Source:
    """(uint8 image [R, R, C], label) pairs taken as they are (no conversion): a wrong shape,
    dtype or label is a DatasetError naming the row; names default to the label numbers."""
    shape = (resolution, resolution, channels)

    def items_() -> Iterator[Item]:
        for i, (img, label) in enumerate(items):
            img = np.asarray(img)
            if img.shape != shape or img.dtype != np.uint8:
                raise DatasetError(f"array {i} is {img.dtype} {img.shape}, not uint8 {shape}: pack_arrays "
                                   "takes images already prepared at the pack's size")
            if class_names is not None and not 0 <= int(label) < len(class_names):
                raise DatasetError(f"array {i} has label {int(label)}, outside the {len(class_names)} class names")
            if int(label) < 0:
                raise DatasetError(f"array {i} has the negative label {int(label)}")
            yield img, int(label), f"array://{i}", None, None

    def names(labels: List[int]) -> List[str]:
        return list(class_names) if class_names is not None else [str(k) for k in range(max(labels) + 1)]
    return _Source(int(total or 0), items_, names, "arrays", None)


def pack_arrays(items: Iterable[Tuple[np.ndarray, int]], out: PathLike, resolution: int, channels: int = 3,
                encoding: str = "raw", class_names: Optional[Sequence[str]] = None, total: Optional[int] = None,
                shard_bytes: int = SHARD_BYTES, progress_every: float = 10.0) -> Path:
    """Pack images given as arrays, one at a time: `items` yields (uint8 [R, R, C], int label)
    already at the pack's size (no conversion; each is written and dropped, so memory does not
    grow with their number). class_names: one per label (default '0', '1', ... up to the
    largest label); total: their number, for the progress ETA only. The pack is the one
    `pack_dataset` writes (paths 'array://i', summary source 'arrays'); returns `out`."""
    resolution, channels = check_resolution(resolution, power_of_two=False), check_channels(channels)
    if encoding not in ENCODINGS:
        raise DatasetError(f"encoding {encoding!r}: use 'raw' (fastest to read) or 'png' (smaller)")
    out = check_output(out, KIND, "OUT")
    source = _array_source(items, resolution, channels, class_names, total)
    return _write_pack(source, out, resolution, channels, encoding, shard_bytes, False, progress_every)


def _write_pack(source: _Source, out: Path, resolution: int, channels: int, encoding: str, shard_bytes: int,
                skip_corrupt: bool, progress_every: float) -> Path:
    """Write `source` into a hidden folder beside `out`, then put it in place (see the module docstring)."""
    tmp = out.with_name(f".{out.name}.packing-{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)      # left by a killed run of this process id
        claim_output(tmp, KIND, "OUT")
        bar = Progress(source.total, f"pack: images to {out}", every=progress_every)
        meta = _write_rows(source, tmp, resolution, channels, encoding, shard_bytes, skip_corrupt, bar)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
        _publish(tmp, out)
    finally:
        source.close()
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info(f"pack: wrote {out}: {len(meta['shards'])} shard(s), {meta['encoding']}, content sha256 "
                f"{meta['content_sha256'][:16]}...; {summary_line(meta['summary'])}")
    return out


if __name__ == "__main__":  # old path, for one release; use: python -m jaxgen pack
    import runpy
    runpy.run_module("jaxgen.commands.pack", run_name="__main__")
