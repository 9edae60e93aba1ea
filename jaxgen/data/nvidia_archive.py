"""The files of an NVIDIA dataset, a zip or a folder, read within bounds (`Archive`).

Why the bounds: a zip is untrusted input. Entries that name a place outside it are refused
when it is opened; a file over MAX_ENTRY_BYTES, or a zip entry inflating over MAX_RATIO times
its stored size (a zip bomb), is refused before it is read. `jaxgen.data.nvidia_format` reads
the dataset (labels, images) through it.
"""
from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path
from typing import List, Optional, Tuple, Union

from PIL import Image

from jaxgen.data.folder import DatasetError

__all__ = ["Archive", "PathLike", "MAX_ENTRY_BYTES", "MAX_RATIO", "RATIO_FLOOR"]

# Bounds on hostile or broken archives, checked before anything is allocated for them:
MAX_ENTRY_BYTES = 256 << 20             # one image file read into memory (a 4096 px RGBA PNG is 64 MiB)
MAX_RATIO = 1100                        # inflated / stored bytes of a zip entry (deflate's ceiling is ~1032)
RATIO_FLOOR = 1 << 20                   # ... checked on entries that inflate to more than this
PathLike = Union[str, os.PathLike]


def _image_extensions() -> Tuple[str, ...]:
    """Every extension PIL can open, as NVIDIA's ImageFolderDataset uses (PIL.Image.EXTENSION)."""
    Image.init()
    return tuple(Image.EXTENSION)


def _is_image_name(name: str, extensions: Tuple[str, ...]) -> bool:
    """An image file of the dataset: a PIL extension, no hidden part (macOS's __MACOSX/._x.png)."""
    parts = name.split("/")
    hidden = any(p.startswith(".") or p == "__MACOSX" for p in parts)
    return not hidden and os.path.splitext(name)[1].lower() in extensions


def _outside(name: str) -> bool:
    """True for an archive entry naming a place outside the archive: absolute ('/etc/x.png',
    'C:/x.png', '\\x.png') or with a '..' part. zipfile lists such names as they are stored."""
    parts = name.replace("\\", "/").split("/")
    drive = len(name) > 1 and name[1] == ":" and name[0].isalpha()
    return name.startswith(("/", "\\")) or drive or ".." in parts


class Archive:
    """The files of a zip or a folder by relative '/'-separated name: `names` (sorted), `read`.

    Why the bounds: a zip is untrusted input. Entries that name a place outside it are refused
    when it is opened; `read` refuses a file over `max_entry_bytes` (from the zip's declared
    size or the file's, before reading) and a zip entry that inflates over `max_ratio` times its
    stored size (a zip bomb), each in one line naming the entry, instead of filling memory."""

    def __init__(self, path: PathLike, max_entry_bytes: int = MAX_ENTRY_BYTES, max_ratio: float = MAX_RATIO):
        self.path = Path(path).expanduser()
        self.zip = None
        self.max_entry_bytes, self.max_ratio = int(max_entry_bytes), float(max_ratio)
        if self.path.is_dir():
            names = [os.path.relpath(os.path.join(d, f), self.path).replace(os.sep, "/")
                     for d, _, files in os.walk(self.path) for f in files]
        elif self.path.is_file():
            try:
                self.zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as e:
                raise DatasetError(f"{self.path} is not a readable zip ({e}); pass a zip written by "
                                   "NVIDIA's dataset_tool.py (or jaxgen's export), or re-create it") from None
            names = [n for n in self.zip.namelist() if not n.endswith("/")]
            bad = next((n for n in self.zip.namelist() if _outside(n)), None)
            if bad is not None:
                self.zip.close()
                raise DatasetError(f"{self.path} holds the entry {bad!r}, a path outside the zip (absolute or "
                                   "with '..'), which no dataset has: re-make the zip from the dataset's "
                                   "folder (dataset_tool.py, or python -m jaxgen nvidia_dataset export)")
        else:
            raise DatasetError(f"dataset not found: {self.path}. Pass a zip written by NVIDIA's "
                               "dataset_tool.py, or a folder of images with its dataset.json")
        self.names = sorted(names)

    def image_names(self) -> List[str]:
        """The dataset's images: names with a PIL extension (as NVIDIA's loader), none hidden."""
        extensions = _image_extensions()
        return [n for n in self.names if _is_image_name(n, extensions)]

    def size(self, name: str) -> int:
        """Bytes of file `name` (a zip entry's declared inflated size: zipfile reads no more)."""
        if self.zip is not None:
            return self.zip.getinfo(name).file_size
        return (self.path / name).stat().st_size

    def check(self, name: str, limit: Optional[int] = None) -> int:
        """The size of `name` if reading it is safe, else DatasetError naming it: over `limit`
        (default max_entry_bytes) bytes, or a zip entry inflating over max_ratio times."""
        limit, size = self.max_entry_bytes if limit is None else int(limit), self.size(name)
        where = f"{name} in {self.path}" if self.zip is not None else str(self.path / name)
        if size > limit:
            raise DatasetError(f"{where} is {size:,} bytes, over the {limit:,} one file of a dataset may "
                               "have (a corrupt or hostile zip?); remove it, or re-make the zip with "
                               "dataset_tool.py at the size you train at")
        stored = self.zip.getinfo(name).compress_size if self.zip is not None else size
        if size > RATIO_FLOOR and size > self.max_ratio * max(stored, 1):
            raise DatasetError(f"{where} inflates from {stored:,} to {size:,} bytes (over {self.max_ratio:g}x: "
                               "a zip bomb?); re-make the zip with dataset_tool.py (it stores images uncompressed)")
        return size

    def read(self, name: str, limit: Optional[int] = None) -> bytes:
        """The bytes of `name` after `check`: read as a stream of at most its checked size."""
        size = self.check(name, limit)
        try:
            with self.zip.open(name) if self.zip is not None else open(self.path / name, "rb") as f:
                return f.read(size)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as e:
            raise DatasetError(f"{name} in {self.path} cannot be read ({type(e).__name__}: {str(e)[:80]}); "
                               "the file is damaged: re-make or re-download the dataset") from None

    def stamp(self) -> list:
        """What the cache key depends on: the zip's size and mtime, or every file's in a folder."""
        files = [self.path] if self.zip is not None else [self.path / n for n in self.names]
        return [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
