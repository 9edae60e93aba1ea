"""Output folders the user names: jaxgen writes only into a folder it made itself.

Why: a command pointed (by mistake, or by a default) at a folder of the user's
own files must not overwrite or mix into them. Every command that writes into
a user-named folder (evolve, generate, pipeline, evaluate, compare, conversion,
xgb) calls `claim_output(path, kind)` before writing:

  * a missing or empty folder is created and stamped with a marker file,
    `.jaxgen-output.json` (kind, creation time, the command line);
  * a folder holding the marker of the same kind is returned as it is: the
    command resumes (or adds to) its own output;
  * anything else (the user's files, another command's output) is an
    `OutputError`, one line naming the folder, what is in it and the flag
    that picks another folder.

`check_output` makes the same decision without creating anything, so a command
can refuse before it loads a model or renders a single image. `legacy` lets a
command adopt a folder that an older jaxgen (before the marker) wrote, e.g. a
pipeline workdir with its `.<step>.done` files, so those runs still resume.
"""
from __future__ import annotations

import datetime
import json
import pathlib
import sys
from typing import Callable, List, Optional, Union

from jaxgen.errors import OutputError
from jaxgen.utils.files import write_text_atomic

MARKER = ".jaxgen-output.json"
PathLike = Union[str, pathlib.Path]
Legacy = Optional[Callable[[pathlib.Path], bool]]


def read_marker(path: PathLike) -> Optional[dict]:
    """The marker of folder `path` as a dict, or None when it has none (or it is unreadable)."""
    f = pathlib.Path(path) / MARKER
    try:
        data = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_output(path: PathLike, kind: str, flag: str = "--out", legacy: Legacy = None) -> pathlib.Path:
    """`path` as a Path if `kind` may write there (missing, empty, or its own); else OutputError.

    Creates nothing. `legacy(folder) -> bool` accepts an unmarked folder that an
    older version of the same command wrote (see the module docstring).
    """
    p = pathlib.Path(path).expanduser()
    if not p.exists():
        return p
    if not p.is_dir():
        raise OutputError(f"{flag} {p} is a file, not a folder; choose a folder with {flag}")
    # (a marker being written by another host of the same job does not count)
    entries = sorted((e for e in p.iterdir() if e.name != MARKER + ".tmp"), key=lambda e: e.name)
    if not entries:
        return p
    marker = read_marker(p)
    if marker is not None:
        if marker.get("kind") == kind:
            return p
        raise OutputError(f"{flag} {p} holds the output of another jaxgen command "
                          f"({marker.get('kind')!r}, not {kind!r}); choose another folder with {flag}")
    if legacy is not None and legacy(p):
        return p
    raise OutputError(f"{flag} {p} is not empty and was not written by jaxgen ({_listing(entries)}); "
                      f"nothing was written: choose a new or empty folder with {flag}")


def claim_output(path: PathLike, kind: str, flag: str = "--out", legacy: Legacy = None) -> pathlib.Path:
    """`check_output`, then create the folder and stamp it with the marker (if not yet); the Path."""
    p = check_output(path, kind, flag, legacy)
    p.mkdir(parents=True, exist_ok=True)
    if read_marker(p) is None:
        stamp = dict(kind=kind, created=datetime.datetime.now().isoformat(timespec="seconds"),
                     command=" ".join(sys.argv), note="written by jaxgen: it may resume or add to "
                     "this folder; it refuses folders without this file")
        write_text_atomic(p / MARKER, json.dumps(stamp, indent=1) + "\n")
    return p


def beside(model: PathLike, suffix: str) -> pathlib.Path:
    """The default output folder for results about `model`: next to it, never inside it.

    'runs/acne_tiny' -> 'runs/acne_tiny_<suffix>'; 'nets/ffhq.pkl' -> 'nets/ffhq_<suffix>'.
    """
    p = pathlib.Path(model).expanduser()
    name = p.stem if p.suffix and not p.is_dir() else p.name
    return p.parent / f"{name or 'output'}_{suffix}"


def has_files(*names: str) -> Callable[[pathlib.Path], bool]:
    """A `legacy` test: True for a folder holding every one of `names`."""
    return lambda p: all((p / n).exists() for n in names)


def _listing(entries: List[pathlib.Path], show: int = 3) -> str:
    """'a.txt, b/, c.png and 4 more' for the first `show` entries of a folder."""
    names = [e.name + ("/" if e.is_dir() else "") for e in entries[:show]]
    more = f" and {len(entries) - show} more" if len(entries) > show else ""
    return "holds " + ", ".join(names) + more
