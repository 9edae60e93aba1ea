"""What a generator export keeps on disk besides its images, and how a rerun is kept consistent.

The settings that decide which images are written live in the output marker (`store_settings`);
a rerun with other settings is refused before anything is written (`refuse_changed`), or, with
--rebuild, the export's own files are removed first (`clear_export`). metadata.jsonl holds one
row per image (`write_metadata`); numbered PNGs a run did not list are removed
(`remove_unlisted`). `generator_fingerprint` identifies the generator's weights beyond its path.
"""
from __future__ import annotations

import hashlib
import json
import pathlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import numpy as np

from jaxgen.errors import OutputError
from jaxgen.runs import Run
from jaxgen.utils.files import write_text_atomic
from jaxgen.utils.outputs import MARKER, forget_settings, read_marker

OUTPUT_KIND = "generate"


def legacy_output(folder: pathlib.Path) -> bool:
    """True for a generate output written before the marker: its metadata.jsonl rows."""
    try:
        first = (folder / "metadata.jsonl").read_text().split("\n", 1)[0]
        row = json.loads(first)
    except (OSError, ValueError):
        return False
    return isinstance(row, dict) and {"latent_seed", "checkpoint", "class_name"} <= set(row)


def abs_path(path: str) -> str:
    """An absolute path string for the stored settings ('' stays '')."""
    return str(pathlib.Path(path).expanduser().absolute()) if path else ""


def refuse_changed(out_dir: pathlib.Path, settings: Dict[str, Any], only_given: bool = False) -> None:
    """OutputError (one line, nothing written) when `out_dir` holds an export with other settings.

    only_given: compare only the keys of `settings` (the check before the generator is opened;
    the generator's fingerprint and the threshold in use are compared once they are known)."""
    marker = read_marker(out_dir) if out_dir.is_dir() else None
    stored = (marker or {}).get("settings")
    now = json.loads(json.dumps(settings))
    if not isinstance(stored, dict):
        return
    keys = set(now) if only_given else set(stored) | set(now)
    diff = "; ".join(f"{k}: {stored.get(k)!r} -> {now.get(k)!r}" for k in sorted(keys) if stored.get(k) != now.get(k))
    if diff:
        raise OutputError(f"--out {out_dir} holds an export made with other settings ({diff}); nothing was "
                          "written: rerun with its settings to resume it, choose a new --out, or pass "
                          "--rebuild to replace that export's images with new ones")


def generator_fingerprint(g: Run) -> Dict[str, Any]:
    """What identifies the generator's weights beyond its path: kind, checkpoint step and a SHA-256
    of its parameters (a workdir trained further, or another .pkl at the same path, differs)."""
    leaves = jax.tree_util.tree_leaves(getattr(g, "variables", None))
    h = hashlib.sha256()
    for leaf in leaves:
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    step = getattr(g, "step", None)
    return dict(kind=getattr(g, "kind", None), step=None if step is None else int(step),
                params_sha256=h.hexdigest()[:20] if leaves else None)


EXPORT_FILES = ("metadata.jsonl", "acceptance.json", "datasheet.json", "datasheet.md", "images.csv",
                "nearest_real.png")


def _own_images(cdir: pathlib.Path, name: str) -> List[pathlib.Path]:
    """The files of class folder `cdir` in the export's own pattern: <name>_NNNNN.png and the
    temporary <name>_NNNNN.tmp.png of a write cut short."""
    digits = "[0-9]" * 5
    return sorted(list(cdir.glob(f"{name}_{digits}.png")) + list(cdir.glob(f"{name}_{digits}.tmp.png")))


def remove_unlisted(cdir: pathlib.Path, name: str, keep: Sequence[str]) -> int:
    """Delete the export-pattern files of class folder `cdir` that are not in `keep` (file names):
    images of candidate numbers this run did not reach, or written before a crash and never listed.
    Returns how many; other files are left alone."""
    gone = [p for p in _own_images(cdir, name) if p.name not in set(keep)]
    for p in gone:
        p.unlink()
    return len(gone)


def clear_export(out_dir: pathlib.Path) -> int:
    """--rebuild: delete what this export listed or wrote (the <class>_NNNNN.png files of its
    class folders, which hold every image it listed, metadata.jsonl, acceptance.json, the
    datasheet files) and forget its settings; the user's own files stay. Returns images removed."""
    n = 0
    for d in sorted(p for p in out_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        n += remove_unlisted(d, d.name, ())
        if not any(d.iterdir()):
            d.rmdir()
    for f in EXPORT_FILES:
        (out_dir / f).unlink(missing_ok=True)
    forget_settings(out_dir)
    return n


def store_settings(out_dir: pathlib.Path, settings: Dict[str, Any]) -> None:
    """Record the export's settings in its marker (a marker written before them is adopted)."""
    marker = read_marker(out_dir) or {}
    if marker.get("settings") != json.loads(json.dumps(settings)):
        write_text_atomic(out_dir / MARKER, json.dumps(dict(marker, settings=settings), indent=1) + "\n")


def write_metadata(out_dir: pathlib.Path, picked: List[Tuple[int, str]], records: Dict[str, dict], psi: float,
                   seed: int, checkpoint: str, teacher: Optional[str] = None) -> List[Dict]:
    """Write metadata.jsonl: the rows of the classes written now, after the earlier rows of others.

    A record with `latent_seed` keeps it (--label_by), else it is [seed, class, latent_index];
    with a teacher, rows also get `teacher_probs` (its softmax, in the export's class order) and
    `teacher` (the classifier run)."""
    now = {name for _, name in picked}
    path = out_dir / "metadata.jsonl"
    rows = []
    if path.exists():   # classes exported by an earlier call with other --classes stay listed
        rows = [r for r in map(json.loads, filter(None, path.read_text().splitlines()))
                if r.get("class_name") not in now]
    index = {name: ci for ci, name in picked}
    for file, rec in records.items():
        name = file.split("/", 1)[0]
        rec = dict(rec)
        latent = rec.pop("latent_seed") if "latent_seed" in rec else \
            [seed, index[name], rec.pop("latent_index")]
        probs = rec.pop("teacher_probs", None)
        row = dict(file=file, class_name=name, class_index=index[name], latent_seed=latent, psi=psi,
                   checkpoint=str(checkpoint), identity=rec)
        rows.append(row if teacher is None else dict(row, teacher_probs=probs, teacher=str(teacher)))
    rows.sort(key=lambda r: (r.get("class_index", 0), r["file"]))
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))
    return rows
