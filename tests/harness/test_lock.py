"""One writer per run: the workdir's `.jaxgen-lock` (jaxgen.utils.outputs.FolderLock), taken by the
training harness before its first write and released when it returns or raises. Real processes
hold, race for and leave stale locks; a second train.py is refused in one line naming the holder."""
import json
import logging
import os
import pathlib
import socket
import subprocess
import sys
import time

import ml_collections
import optax
import pytest

from jaxgen.errors import OutputError
from jaxgen.harness import loop
from jaxgen.harness.schedule import Schedule
from jaxgen.utils.outputs import LOCK, FolderLock, check_unlocked
from toy_experiment import RES, ToyExperiment, no_tensorboard  # noqa: F401 (fixture)

REPO = pathlib.Path(__file__).resolve().parents[2]
# A process that takes the lock of argv[1], says so, and holds it until its stdin closes.
HOLDER = ("import sys; from jaxgen.utils.outputs import FolderLock; lock = FolderLock(sys.argv[1]).acquire(); "
          "print('held', flush=True); sys.stdin.read(); lock.release()")
# A process that waits for the file argv[2], then tries the lock of argv[1]: prints won/lost.
RACER = ("import os, sys, time; from jaxgen.errors import OutputError; from jaxgen.utils.outputs import FolderLock\n"
         "while not os.path.exists(sys.argv[2]): time.sleep(0.001)\n"
         "try:\n    lock = FolderLock(sys.argv[1]).acquire(); print('won', flush=True)\n"
         "except OutputError:\n    print('lost', flush=True)\n"
         "sys.stdin.read()\n")


class Toy(ToyExperiment):
    """6 steps of 2 a tick; `seen` records the lock's holder at each tick (read in after_tick)."""

    def __init__(self, config, workdir):
        self.toy_data(12, 2)
        self.seed, self.num_examples, self.cfg = 0, 12, config
        self.schedule = Schedule(4, 6, 2, 1, 1, 2)
        self.descriptor = dict(class_names=["a", "b"], resolution=RES, channels=1, model="toy", model_kwargs={})
        self.tx = optax.sgd(0.01)
        self.workdir = workdir
        config.built = True

    def batch(self, step):
        idx = [(step * 4 + i) % 12 for i in range(4)]
        return self.images[idx], self.labels[idx].astype("float32")

    def after_tick(self, state, tick):
        self.cfg.seen.append(json.loads((self.workdir / LOCK).read_text())["pid"])
        if tick.index == self.cfg.crash_tick:
            raise RuntimeError("crash in a tick")


def _config(**kw):
    return ml_collections.ConfigDict(dict(dict(built=False, seen=[], crash_tick=-1), **kw))


def _env():
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), JAXGEN_JAX_CACHE="")
    env.pop("JAXGEN_DEBUG", None)
    return env


def _holder(folder):
    """A live process holding `folder`'s lock (it lets go when its stdin is closed)."""
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=_env())
    assert p.stdout.readline().strip() == "held"
    return p


def _dead_pid():
    """The pid of a process that has exited (and was reaped): os.kill(pid, 0) finds no such process."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _snapshot(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def test_lock_names_its_holder_and_a_second_taker_is_refused(tmp_path):
    with FolderLock(tmp_path) as lock:
        info = json.loads((tmp_path / LOCK).read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname() and info["since"]
        with pytest.raises(OutputError) as e:
            FolderLock(tmp_path, "--out").acquire()
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(f"--out {tmp_path} is in use by another jaxgen process")
        assert f"pid {os.getpid()} on {socket.gethostname()}, since {info['since']}" in msg
        with pytest.raises(OutputError, match="is in use"):
            check_unlocked(tmp_path)
        assert lock.text == (tmp_path / LOCK).read_text()
    assert not (tmp_path / LOCK).exists()
    check_unlocked(tmp_path)                                # free again


def test_a_live_holder_in_another_process_and_another_hosts_lock_are_respected(tmp_path):
    p = _holder(tmp_path)
    try:
        with pytest.raises(OutputError, match=f"pid {p.pid} on {socket.gethostname()}"):
            FolderLock(tmp_path).acquire()
    finally:
        p.communicate("")
    assert p.returncode == 0 and not (tmp_path / LOCK).exists()     # released by its holder
    other = dict(pid=_dead_pid(), host=socket.gethostname() + "-elsewhere", since="2026-01-01T00:00:00")
    (tmp_path / LOCK).write_text(json.dumps(other))                # its pid means nothing here
    with pytest.raises(OutputError, match="-elsewhere, since 2026-01-01T00:00:00"):
        FolderLock(tmp_path).acquire()


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
    dead = _dead_pid()
    (tmp_path / LOCK).write_text(json.dumps(dict(pid=dead, host=socket.gethostname(), since="2026-01-01T00:00:00")))
    check_unlocked(tmp_path)                                 # stale: no refusal
    with caplog.at_level(logging.WARNING):
        lock = FolderLock(tmp_path).acquire()
    assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    assert any(f"stale lock {tmp_path / LOCK} of process {dead}" in r.getMessage() for r in caplog.records)
    lock.release()
    (tmp_path / LOCK).write_text("")                         # a lock being written: respected at first
    with pytest.raises(OutputError, match="being locked by another process"):
        FolderLock(tmp_path).acquire()
    old = time.time() - 3600                                 # ... but not an hour later
    os.utime(tmp_path / LOCK, (old, old))
    FolderLock(tmp_path).acquire().release()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no '.stale' leftovers


@pytest.mark.skipif(not pathlib.Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_a_lock_of_an_exited_but_unreaped_process_is_stale(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    stat = pathlib.Path(f"/proc/{p.pid}/stat")
    deadline = time.time() + 60
    while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z" and time.time() < deadline:
        time.sleep(0.02)                                      # exited; its parent (here) has not waited
    try:
        os.kill(p.pid, 0)                                     # the pid still answers ...
        (tmp_path / LOCK).write_text(json.dumps(dict(pid=p.pid, host=socket.gethostname(), since="x")))
        FolderLock(tmp_path).acquire().release()              # ... but its lock is stale
    finally:
        p.wait()


def test_release_leaves_a_lock_that_another_process_took_alone(tmp_path):
    lock = FolderLock(tmp_path).acquire()
    theirs = json.dumps(dict(pid=os.getppid(), host=socket.gethostname(), since="x"))
    (tmp_path / LOCK).write_text(theirs)                     # e.g. taken over meanwhile
    lock.release()
    assert (tmp_path / LOCK).read_text() == theirs


def test_of_processes_racing_for_one_lock_exactly_one_wins(tmp_path):
    go = tmp_path / "go"
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path / "w"), str(go)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, env=_env()) for _ in range(4)]
    (tmp_path / "w").mkdir()
    time.sleep(1.0)                                          # all waiting (imports done)
    go.write_text("")
    results = [p.stdout.readline().strip() for p in racers]
    for p in racers:
        p.communicate("")
    assert sorted(results) == ["lost", "lost", "lost", "won"], results


def test_training_holds_the_lock_and_releases_it_on_return_and_on_a_crash(tmp_path):
    w = tmp_path / "run"
    cfg = _config()
    loop.train(Toy, cfg, w)
    assert cfg.seen == [os.getpid()] * 3 and not (w / LOCK).exists()
    cfg = _config(crash_tick=1)
    with pytest.raises(RuntimeError, match="crash in a tick"):
        loop.train(Toy, cfg, tmp_path / "crash")
    assert cfg.seen == [os.getpid()] and not (tmp_path / "crash" / LOCK).exists()


def test_training_refuses_a_held_workdir_before_building_anything(tmp_path):
    w = tmp_path / "run"
    loop.train(Toy, _config(), w)                           # a finished run: a rerun would resume it
    p = _holder(w)
    try:
        before = _snapshot(w)
        cfg = _config()
        with pytest.raises(OutputError, match=f"--workdir {w} is in use by another jaxgen process .pid {p.pid}"):
            loop.train(Toy, cfg, w)
        assert not cfg.built and _snapshot(w) == before
    finally:
        p.communicate("")


def test_training_takes_over_a_dead_trainers_lock(tmp_path, caplog):
    w = tmp_path / "run"
    w.mkdir()
    dead = _dead_pid()
    (w / LOCK).write_text(json.dumps(dict(pid=dead, host=socket.gethostname(), since="2026-01-01T00:00:00",
                                          command="train.py (killed)")))
    cfg = _config()
    with caplog.at_level(logging.WARNING):
        loop.train(Toy, cfg, w)
    assert any(f"of process {dead} on {socket.gethostname()}" in r.getMessage() for r in caplog.records)
    assert cfg.seen == [os.getpid()] * 3 and not (w / LOCK).exists()
    assert (w / "run.json").exists() and (w / "checkpoints" / "6").is_dir()


def test_a_second_train_py_is_refused_in_one_line_naming_the_holder(tmp_path):
    w = tmp_path / "run"
    w.mkdir()
    p = _holder(w)
    try:
        since = json.loads((w / LOCK).read_text())["since"]
        r = subprocess.run([sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs/acne.py") + ":micro",
                            "--workdir", str(w)], capture_output=True, text=True, timeout=300, env=_env(), cwd=tmp_path)
    finally:
        p.communicate("")
    assert r.returncode == 2, r.stderr[-3000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"error: --workdir {w} is in use by another jaxgen process (pid {p.pid} on "
                               f"{socket.gethostname()}, since {since}")
    assert sorted(x.name for x in w.iterdir()) == [] and not (tmp_path / "data").exists()   # nothing loaded
