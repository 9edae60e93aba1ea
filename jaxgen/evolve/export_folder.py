"""An evolve export's folder: claimed or resumed, kept to exactly what metadata.jsonl lists.

`check_export_folder` (may an export write there?), `refuse_changed` / `store_settings` (the
settings in its ``.jaxgen-output.json`` marker), `remove_unlisted` / `clear_export` (files no
metadata row lists; --rebuild) and `open_export`, which does all of it before the first round
(the layout and resume rules: ``jaxgen.evolve.export``).
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Dict, List

from jaxgen.errors import OutputError
from jaxgen.evolve.export_config import ExportConfig, settings_diff
from jaxgen.evolve.ga import GAConfig
from jaxgen.utils.files import write_text_atomic
from jaxgen.utils.logger import logger
from jaxgen.utils.outputs import MARKER, check_output, claim_output, forget_settings, read_marker

__all__ = ["OUTPUT_KIND", "check_export_folder", "refuse_changed", "store_settings", "remove_unlisted",
           "clear_export"]

OUTPUT_KIND = "evolve"


def _read_jsonl(path: pathlib.Path) -> List[dict]:
    """The rows of a JSON-lines file ([] if missing), without a last line cut by a crash."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a crash: its round is redone
                pass
    return rows


@dataclasses.dataclass
class OpenExport:
    """The export's shared state: where it writes and what finished rounds wrote."""

    out: pathlib.Path
    ga_cfg: GAConfig
    cfg: ExportConfig
    progress: Dict[str, dict]          # progress.json: per class rounds, exported, rejected, history
    rows: List[dict]                   # metadata.jsonl rows of finished rounds

    @property
    def meta_path(self) -> pathlib.Path:
        return self.out / "metadata.jsonl"

    @property
    def prog_path(self) -> pathlib.Path:
        return self.out / "progress.json"


def _legacy_export(folder: pathlib.Path) -> bool:
    """True for an export written before the output marker: its progress.json of class rounds."""
    try:
        prog = json.loads((folder / "progress.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(prog, dict) and all(isinstance(v, dict) and "rounds" in v for v in prog.values())


def check_export_folder(out, flag: str = "--out") -> pathlib.Path:
    """`out` as a Path if an export may write there (new, empty, or an export); else OutputError.

    Creates nothing: evolve.py calls it before it builds any model.
    """
    return check_output(out, OUTPUT_KIND, flag, legacy=_legacy_export)


def refuse_changed(out: pathlib.Path, now: Dict[str, Any], flag: str = "--out") -> None:
    """OutputError (one line, nothing written) when the export in `out` was made with other
    settings: the sections of `now` that its marker also holds are compared ('config': the evolve
    config before any model is built; 'export': `export_settings`, once they are)."""
    stored = (read_marker(out) or {}).get("settings") if out.is_dir() else None
    if not isinstance(stored, dict):
        return
    now = json.loads(json.dumps(now, default=str))
    diff = [d for k in now if k in stored for d in settings_diff(stored[k], now[k], k)]
    if diff:
        more = f" and {len(diff) - 4} more" if len(diff) > 4 else ""
        raise OutputError(f"{flag} {out} holds an export made with other settings ({'; '.join(diff[:4])}{more}); "
                          f"nothing was written: rerun with its settings to resume it, choose a new {flag}, or "
                          "pass --rebuild to replace that export's images with new ones")


def store_settings(out: pathlib.Path, now: Dict[str, Any]) -> None:
    """Record the settings sections `now` in the export's marker (beside those it holds)."""
    marker = read_marker(out) or {}
    settings = dict(marker.get("settings") or {}, **json.loads(json.dumps(now, default=str)))
    if marker.get("settings") != settings:
        write_text_atomic(out / MARKER, json.dumps(dict(marker, settings=settings), indent=1) + "\n")


def _own_files(folder: pathlib.Path, name: str, ext: str) -> List[pathlib.Path]:
    """The export-pattern files <name>_NNNNN<ext> of a folder, with the .tmp<ext> of a cut write."""
    digits = "[0-9]" * 5
    return sorted(list(folder.glob(f"{name}_{digits}{ext}")) + list(folder.glob(f"{name}_{digits}.tmp{ext}")))


def remove_unlisted(out: pathlib.Path, rows: List[dict]) -> int:
    """Delete the export-pattern images (<class>/<class>_NNNNN.png) and latents
    (latents/<class>/<class>_NNNNN.npy) that no metadata row lists: written by a round that did
    not finish, or by an earlier export (--rebuild passes no rows). Other files stay; class
    folders left empty are removed. Returns how many images."""
    keep = {r.get("file") for r in rows} | {r.get("latent") for r in rows}
    n = 0
    for d in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "latents"):
        for folder, ext in ((d, ".png"), (out / "latents" / d.name, ".npy")):
            gone = [p for p in _own_files(folder, d.name, ext) if p.relative_to(out).as_posix() not in keep]
            for p in gone:
                p.unlink()
            n += len(gone) if ext == ".png" else 0
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
    return n


def clear_export(out: pathlib.Path) -> int:
    """--rebuild: delete what the export in `out` wrote (its images and latents, metadata.jsonl,
    progress.json, evolve.json, the plots) and forget its settings; returns images removed."""
    n = remove_unlisted(out, [])
    for f in ("metadata.jsonl", "progress.json", "evolve.json", "fitness.png", "preview.png"):
        (out / f).unlink(missing_ok=True)
    forget_settings(out)
    return n


def open_export(out: pathlib.Path, ga_cfg: GAConfig, cfg: ExportConfig, settings: Dict[str, Any],
                 rebuild: bool = False) -> OpenExport:
    """Claim `out` (new, empty or an export) or resume it: an export made with other `settings`
    is refused (cleared with `rebuild`); keep the metadata rows of finished rounds and remove the
    images no row lists, so the folder holds exactly what metadata.jsonl lists."""
    check_export_folder(out)
    if rebuild and out.is_dir():
        logger.info(f"evolve: --rebuild: removed {clear_export(out)} images of the earlier export in {out}")
    refuse_changed(out, settings)
    claim_output(out, OUTPUT_KIND, legacy=_legacy_export)
    store_settings(out, settings)
    ex = OpenExport(out, ga_cfg, cfg, {}, [])
    if ex.prog_path.exists():
        ex.progress = json.loads(ex.prog_path.read_text())
    ex.rows = [r for r in _read_jsonl(ex.meta_path)
               if r.get("round", 0) < ex.progress.get(r.get("class_name"), {}).get("rounds", 0)]
    write_text_atomic(ex.meta_path, "".join(json.dumps(r) + "\n" for r in ex.rows))
    stray = remove_unlisted(out, ex.rows)
    if stray:
        logger.info(f"evolve: removed {stray} images of {out} that metadata.jsonl does not list (a round cut short)")
    return ex
