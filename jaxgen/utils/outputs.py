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

Nothing is placed inside what jaxgen owns, either: an output path below a
training run (a folder whose run.json is a jaxgen descriptor) or below another
marked output is refused (`evolve.py --out runs/g/evolved` would leave the run
unreadable), unless this process claimed that folder itself (e.g. the utility benchmark
claims its --out, then trains its classifiers there). A workflow's workdir
(pipeline, labelled, demo: WORKFLOW_KINDS) is a folder of runs and datasets:
anything may be written beside them, never inside them. A path below a regular file, or whose folder
cannot be written, is refused in one line too (`check_location`).

`FolderLock` keeps one writer per folder: `.jaxgen-lock` (pid, host, since),
created atomically; a second writer is refused in one line naming the holder,
and the lock of a process that is gone (same host) is taken over with a warning.
"""
from __future__ import annotations

import atexit
import datetime
import json
import logging
import os
import pathlib
import socket
import sys
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

from jaxgen.errors import OutputError
from jaxgen.utils.files import write_text_atomic

MARKER = ".jaxgen-output.json"
LOCK = ".jaxgen-lock"
# A training run's descriptor (jaxgen.harness.checkpoint.DESCRIPTOR / RUN_FORMAT; not imported:
# that module loads orbax, and every command imports this one).
RUN_DESCRIPTOR, RUN_FORMAT = "run.json", "jaxgen-run"
LOCK_WRITE_GRACE_S = 30.0   # an empty lock younger than this is being written by its taker
PathLike = Union[str, pathlib.Path]
Legacy = Optional[Callable[[pathlib.Path], bool]]
# The folders this process claimed: the owning workflow may write sub-outputs inside them.
_CLAIMED: Set[pathlib.Path] = set()
# Workdirs of multi-step workflows: folders of runs and datasets, not a run or a dataset
# themselves, so any command may write beside the runs inside them (e.g. `evaluate.py
# --checkpoint runs/demo/gan`'s default report, runs/demo/gan_eval); the runs and exports
# inside them stay protected.
WORKFLOW_KINDS = ("pipeline", "labelled", "demo", "demo-labelled")


def read_marker(path: PathLike) -> Optional[dict]:
    """The marker of folder `path` as a dict, or None when it has none (or it is unreadable)."""
    f = pathlib.Path(path) / MARKER
    try:
        data = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_kind(path: PathLike) -> Optional[str]:
    """The kind ('stylegan2', 'dcgan', 'classifier') of the jaxgen run in folder `path`, read from
    its run.json descriptor (the jaxgen-run format key), or None: the only sign of a run that
    a folder of the user's own cannot show by chance (config.json, checkpoints/ can)."""
    try:
        info = json.loads((pathlib.Path(path) / RUN_DESCRIPTOR).read_text())
    except (OSError, ValueError):
        return None
    if isinstance(info, dict) and info.get("format") == RUN_FORMAT:
        return str(info.get("kind"))
    return None


def _real(path: PathLike) -> pathlib.Path:
    """`path` absolute, with symlinks and '..' resolved (the folder it really names)."""
    return pathlib.Path(os.path.realpath(pathlib.Path(path).expanduser()))


def owner_above(path: PathLike) -> Optional[Tuple[pathlib.Path, str]]:
    """(folder, what it is) of the nearest folder above `path` that jaxgen owns (a training run
    or a marked output) and this process did not claim; None when nothing above is jaxgen's or
    the nearest owner is a folder this process claimed (a workflow's own workdir)."""
    for parent in _real(path).parents:
        if parent in _CLAIMED:
            return None
        kind = run_kind(parent)
        if kind is not None:
            return parent, f"the jaxgen {kind} run"
        marker = read_marker(parent)
        if marker is not None and marker.get("kind") not in WORKFLOW_KINDS:
            return parent, f"the output of another jaxgen command ({marker.get('kind')!r})"
    return None


def check_location(path: PathLike, flag: str = "--out", writes_existing: bool = False) -> None:
    """OutputError (one line) when `path` lies below a regular file, or when the folder that
    would be created in (its nearest existing parent; `path` itself when it exists and
    `writes_existing`: a command that always writes, e.g. training) cannot be written;
    OutputError when a folder jaxgen owns lies above it (see `owner_above`). Creates nothing.
    (An existing output is not required to be writable by default: a complete demo dataset in
    a read-only folder is only read.)"""
    p = pathlib.Path(path).expanduser()
    found = next((a for a in (p, *p.absolute().parents) if os.path.lexists(a)), None)
    if found is not None and found != p and not found.is_dir():
        raise OutputError(f"{flag} {p} lies below {found}, which is a file, not a folder; "
                          f"choose a folder with {flag}")
    if (found is not None and (found != p or writes_existing) and found.is_dir()
            and not os.access(found, os.W_OK | os.X_OK)):
        raise OutputError(f"{flag} {p}: the folder {found} is not writable (permission denied); nothing "
                          f"was written: choose a folder you can write with {flag}")
    owner = owner_above(p)
    if owner is not None:
        raise OutputError(f"{flag} {p} lies inside {owner[1]} {owner[0]}; writing there would mix into "
                          f"it (it would no longer resume or open): choose a folder outside it with {flag}")


def check_output(path: PathLike, kind: str, flag: str = "--out", legacy: Legacy = None) -> pathlib.Path:
    """`path` as a Path if `kind` may write there (missing, empty, or its own); else OutputError.

    Creates nothing. `legacy(folder) -> bool` accepts an unmarked folder that an
    older version of the same command wrote (see the module docstring). A path below a file,
    in a folder that cannot be written or inside a folder jaxgen owns is refused as well
    (`check_location`), and so is a training run itself.
    """
    p = pathlib.Path(path).expanduser()
    check_location(p, flag)
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
    if run_kind(p) is not None:
        raise OutputError(f"{flag} {p} is a jaxgen {run_kind(p)} run (its run.json); writing there would "
                          f"mix into it: choose a new folder beside it with {flag}")
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
    _CLAIMED.add(_real(p))        # this command may now write its own sub-outputs inside
    return p


def forget_settings(path: PathLike) -> None:
    """Drop the stored export settings from folder `path`'s marker (a --rebuild starts over)."""
    marker = read_marker(path)
    if marker is not None and "settings" in marker:
        marker.pop("settings")
        write_text_atomic(pathlib.Path(path) / MARKER, json.dumps(marker, indent=1) + "\n")


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


class FolderLock:
    """One writer per folder: `folder/.jaxgen-lock` names the writer (pid, host, since, command).

    Why: two trainings started into one workdir both ran, one crashed inside orbax and
    metrics.jsonl held a tick twice. `acquire()` creates the lock with O_CREAT | O_EXCL, so of
    two processes racing exactly one wins; the other gets an OutputError naming the holder.
    A lock whose process is gone (same host, `os.kill(pid, 0)` finds no such process) is taken
    over with a warning; one of another host is respected (its processes cannot be seen from
    here). `release()` removes the lock if it is still this one's; it also runs at interpreter
    exit, for a process that leaves without its finally. The folder must exist.
    """

    def __init__(self, folder: PathLike, flag: str = "--workdir"):
        self.folder, self.flag = pathlib.Path(folder), flag
        self.path = self.folder / LOCK
        self.text: Optional[str] = None      # what this process wrote, while it holds the lock

    def acquire(self) -> "FolderLock":
        """Take the lock (self); OutputError when a live process holds it."""
        info = dict(pid=os.getpid(), host=socket.gethostname(), since=_now(), command=" ".join(sys.argv),
                    token=uuid.uuid4().hex)
        text = json.dumps(info) + "\n"
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._clear_stale()
                continue
            with os.fdopen(fd, "w") as f:
                f.write(text)
            self.text = text
            atexit.register(self.release)
            return self
        raise OutputError(f"{self.flag} {self.folder}: other processes keep taking its lock {self.path}; "
                          "start one writer at a time")

    def release(self) -> None:
        """Remove the lock if this process holds it (it is left alone when another took it)."""
        if self.text is None:
            return
        atexit.unregister(self.release)
        if _read_text(self.path) == self.text:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        self.text = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def _clear_stale(self) -> None:
        """OutputError when the existing lock's holder lives; else remove that lock (warning)."""
        raw = _read_text(self.path)
        if raw is None:
            return                      # released meanwhile: try again
        holder = _parse_lock(raw)
        if _lock_held(holder, self.path):
            raise OutputError(lock_refusal(self.folder, holder, self.flag))
        who = (f"process {holder['pid']} on {holder['host']} (since {holder.get('since', '?')})" if holder
               else "an unreadable lock")
        logging.warning("taking over the stale lock %s of %s: that process is gone", self.path, who)
        _remove_if_unchanged(self.path, raw)


def check_unlocked(folder: PathLike, flag: str = "--workdir") -> None:
    """OutputError (one line, naming the holder) when a live process holds `folder`'s lock; a
    missing or stale lock passes (`FolderLock.acquire` takes a stale one over). Creates nothing."""
    path = pathlib.Path(folder) / LOCK
    raw = _read_text(path)
    if raw is not None:
        holder = _parse_lock(raw)
        if _lock_held(holder, path):
            raise OutputError(lock_refusal(pathlib.Path(folder), holder, flag))


def lock_refusal(folder: pathlib.Path, holder: Optional[Dict[str, Any]], flag: str) -> str:
    """The one-line refusal for a `folder` whose lock `holder` (None: being written) lives."""
    path = folder / LOCK
    if holder is None:
        return (f"{flag} {folder} is being locked by another process right now ({path}); start one "
                f"writer at a time")
    command = str(holder.get("command", ""))
    command = command if len(command) <= 100 else command[:97] + "..."
    return (f"{flag} {folder} is in use by another jaxgen process (pid {holder['pid']} on {holder['host']}, "
            f"since {holder.get('since', '?')}: {command}); wait for it to finish or stop it, then start "
            f"again (if no such process runs any more, delete {path})")


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def _read_text(path: pathlib.Path) -> Optional[str]:
    """The text of `path`, or None when it does not exist (or cannot be read)."""
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _parse_lock(raw: str) -> Optional[Dict[str, Any]]:
    """A lock's {pid, host, since, ...}, or None when it is empty or garbled (being written)."""
    try:
        info = json.loads(raw)
    except ValueError:
        return None
    ok = isinstance(info, dict) and isinstance(info.get("pid"), int) and isinstance(info.get("host"), str)
    return info if ok else None


def _lock_held(holder: Optional[Dict[str, Any]], path: pathlib.Path) -> bool:
    """Whether the lock `path` with contents `holder` still counts: its process lives on this
    host, or it is another host's, or (unreadable) it is younger than LOCK_WRITE_GRACE_S."""
    if holder is None:
        try:
            return time.time() - path.stat().st_mtime < LOCK_WRITE_GRACE_S
        except OSError:
            return False
    return holder["host"] != socket.gethostname() or _pid_alive(holder["pid"])


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host runs: os.kill(pid, 0) finds it (another user's
    counts) and Linux's /proc does not show it as a zombie (exited, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:         # another user's live process
        return True
    except (OverflowError, ValueError):
        return False
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True                 # no /proc (macOS): os.kill's answer stands
    return state not in ("Z", "X")


def _remove_if_unchanged(path: pathlib.Path, raw: str) -> None:
    """Remove the lock `path` if it still reads `raw`. It is first renamed aside (atomic: of two
    processes clearing one stale lock, one gets it); a lock that another process took in the
    meantime is linked back (link does not overwrite) rather than deleted."""
    aside = path.with_name(f"{path.name}.stale.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if _read_text(aside) != raw:
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
    aside.unlink()
