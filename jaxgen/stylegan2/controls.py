"""Generation controls for StyleGAN2 runs: seeds, classes, truncation, style mixing, interpolation.

What a person asks of a trained generator to look at it (the command is
`python -m jaxgen images`); every function works in w space, with
shapes

  z   [N, z_dim]          seed s -> np.random.RandomState(s).randn(z_dim), as NVIDIA's
                          generate.py / style_mixing.py draw it, so a converted snapshot
                          gives NVIDIA's pictures for the same seeds (noise_mode 'const')
  c   [N, c_dim]          one-hot class (width 0 for an unconditional G)
  ws  [N, num_ws, w_dim]  one w per synthesis layer (mapping output, repeated)

Truncation pulls w towards a centre: w' = w_c + psi (w - w_c) on the layers
< cutoff (None = all). The centre is G's running mean `w_avg` ('global',
NVIDIA's trick) or the mean w of the chosen class ('class': `class_mean_w`),
which keeps a truncated conditional sample inside its class instead of drifting
to the average of all classes.

Style mixing (`style_mix`, NVIDIA's semantics): cell (r, c) takes the row
seed's ws with the column seed's ws on the given layer indices. Interpolation
(`interpolate`) lerps in w, or slerps in z and maps. `render` synthesises ws
with one jitted, vmapped program per (G, noise mode) and a fixed batch, so every
call after the first reuses it; 'random' noise is drawn from a key made of
the image's noise seed, so an image is the same whatever batch it is in.
Bad input is a ConfigError of one line naming the flag (`--seeds`, `--class`...).
"""
from __future__ import annotations

import functools
import pathlib
import re
from typing import List, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.errors import ConfigError
from jaxgen.harness.checkpoint import read_descriptor
from jaxgen.runs import Run, RunError, open_run
from jaxgen.utils.labels import one_hot_labels

NOISE_MODES = ("const", "random", "none")
CENTRES = ("global", "class")
SPACES = ("w", "z")
MAX_SEED = 2 ** 32 - 1          # np.random.RandomState's seed range
MAX_SEEDS = 10_000              # seeds (or latents) one call maps: their ws are held in memory
MAX_FRAMES = 1024               # images assembled into one picture or GIF (interp frames, mix cells)
MAP_BATCH = 64                  # mapping and synthesis run in fixed batches: one compile each
SYNTH_BATCH = 8
ClassArg = Union[None, int, str]

_ITEM = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_ints(text: str, flag: str, hi: Optional[int] = None, max_count: Optional[int] = None) -> List[int]:
    """'0-3,7,10-12' -> [0, 1, 2, 3, 7, 10, 11, 12] (order kept); ConfigError naming `flag`.

    hi: the largest value allowed (inclusive); None = no bound but MAX_SEED. max_count: the
    most values in all (counted from the ranges before any list is made: '0-99999999' is
    one line, not 4 GB of ints); None = no bound."""
    top = MAX_SEED if hi is None else hi
    ranges: List[Tuple[int, int]] = []
    for part in str(text).split(","):
        m = _ITEM.match(part)
        if not m:
            raise ConfigError(f"{flag} {text[:60]!r}: {part.strip()[:30]!r} is not a number or range; "
                              "write e.g. 0-3,7,10-12")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if b < a:
            raise ConfigError(f"{flag} {text[:60]!r}: range {a}-{b} runs backwards; write {b}-{a}")
        if b > top:
            raise ConfigError(f"{flag} {text[:60]!r}: {b} is out of range; values run from 0 to {top}")
        ranges.append((a, b))
    count = sum(b - a + 1 for a, b in ranges)
    if max_count is not None and count > max_count:
        raise ConfigError(f"{flag} {text[:60]!r}: {count:,} values, over the {max_count:,} one call takes; "
                          "give fewer (a large synthetic dataset: python -m jaxgen generate)")
    return [v for a, b in ranges for v in range(a, b + 1)]


def parse_seeds(text: str, flag: str = "--seeds") -> List[int]:
    """Seeds from '0-3,7,10-12' (each 0 .. 2**32-1, NumPy's seed range; at most MAX_SEEDS)."""
    return parse_ints(text, flag, max_count=MAX_SEEDS)


def parse_layers(text: str, num_ws: int, flag: str = "--layers") -> List[int]:
    """Layer (w) indices from '0-3' for a G with num_ws ws: each must be < num_ws."""
    try:
        return parse_ints(text, flag, hi=num_ws - 1)
    except ConfigError as e:
        raise ConfigError(f"{e} (this generator has {num_ws} ws: layers 0-{num_ws - 1})") from None


def default_layers(num_ws: int) -> List[int]:
    """The layers mixed when none are given: NVIDIA's 0-6, at most the coarse half of num_ws."""
    return list(range(max(1, min(7, num_ws // 2))))


def open_stylegan2(path, which: str = "auto") -> Run:
    """The StyleGAN2 run at `path`; another kind is refused from its run.json before loading."""
    p = pathlib.Path(path)
    if p.is_dir():
        kind = read_descriptor(p)["kind"]
        if kind != "stylegan2":
            raise RunError(f"{path} is a {kind} run; these controls need a StyleGAN2 run "
                           "(workdir, networks directory or NVIDIA .pkl)")
    return open_run(path, which, kinds=("stylegan2",))


def class_index(run: Run, cls: ClassArg, flag: str = "--class") -> Optional[int]:
    """The class index of `cls` (a name of run.class_names, or an index); None: unconditional G.

    A conditional G needs a class (as NVIDIA's generate.py does); the error lists the names."""
    names = ", ".join(run.class_names)
    if run.num_classes == 0:
        if cls not in (None, ""):
            raise ConfigError(f"{flag} {cls!r}: {run.path} is unconditional (no classes); leave {flag} out")
        return None
    if cls in (None, ""):
        raise ConfigError(f"{flag}: {run.path} is conditional; pick one of its classes: {names}")
    if isinstance(cls, str) and cls in run.class_names:
        return run.class_names.index(cls)
    if isinstance(cls, (int, np.integer)) or str(cls).isdigit():
        if 0 <= int(cls) < run.num_classes:
            return int(cls)
    raise ConfigError(f"{flag} {cls!r}: not a class of {run.path}; its classes are {names}")


def seed_z(seeds: Sequence[int], z_dim: int) -> np.ndarray:
    """z [len(seeds), z_dim] float32: seed s -> RandomState(s).randn(z_dim) (NVIDIA's draw)."""
    return np.stack([np.random.RandomState(int(s)).randn(z_dim) for s in seeds]).astype(np.float32)


def one_hot(run: Run, idx: Optional[int], n: int) -> np.ndarray:
    """c [n, c_dim]: class `idx` one-hot (c_dim 0 and idx None for an unconditional G)."""
    if idx is None:
        return np.zeros([n, run.num_classes], np.float32)
    return one_hot_labels(np.full(n, idx), run.num_classes)


@functools.lru_cache(maxsize=16)
def _mapper(model):
    """Untruncated mapping z [B, z_dim], c [B, c_dim] -> ws [B, num_ws, w_dim], jitted."""
    return jax.jit(lambda v, z, c: model.apply(v, z, c, method=type(model).map))


def map_z(run: Run, z: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Untruncated ws [N, num_ws, w_dim] of z [N, z_dim], c [N, c_dim] (MAP_BATCH at a time)."""
    fn, n = _mapper(run.model), len(z)
    out = []
    for i in range(0, n, MAP_BATCH):
        zb, cb = _pad(z[i:i + MAP_BATCH], MAP_BATCH), _pad(c[i:i + MAP_BATCH], MAP_BATCH)
        out.append(np.asarray(fn(run.variables, zb, cb), np.float32)[:min(MAP_BATCH, n - i)])
    return np.concatenate(out) if out else np.zeros([0, run.model.num_ws, run.model.w_dim], np.float32)


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    """`a` [n, ...] padded with zeros to [size, ...] (n <= size)."""
    return np.concatenate([a, np.zeros((size - len(a),) + a.shape[1:], a.dtype)]) if len(a) < size else a


def w_avg(run: Run) -> np.ndarray:
    """G's running mean of w [w_dim] (the 'global' truncation centre)."""
    try:
        return np.asarray(run.variables["buffers"]["mapping"]["w_avg"], np.float32)
    except (KeyError, TypeError):
        raise ConfigError(f"--centre global: {run.path} has no w_avg (trained with w_avg_beta=None); "
                          "use --psi 1 or --centre class") from None


def class_mean_w(run: Run, cls: ClassArg, n: int = 1000, seed: int = 0) -> np.ndarray:
    """Mean mapped w [w_dim] of class `cls` over n latents z ~ N(0, I) drawn from `seed`."""
    idx = class_index(run, cls)
    if not 1 <= int(n) <= MAX_SEEDS:                      # their ws are held in memory
        raise ConfigError(f"class mean over n={n} latents (--class_mean_n): give 1 .. {MAX_SEEDS}")
    rng = np.random.default_rng([int(seed), 0 if idx is None else idx + 1])
    z = rng.standard_normal([int(n), run.z_dim]).astype(np.float32)
    return map_z(run, z, one_hot(run, idx, int(n)))[:, 0].mean(axis=0)


def check_truncation(run: Run, psi: float, cutoff: Optional[int], centre: str) -> None:
    """ConfigError (naming the flag) unless psi is finite, 0 <= cutoff <= num_ws and centre known."""
    if not np.isfinite(float(psi)):
        raise ConfigError(f"--psi {psi}: give a finite number (1 = no truncation, 0.7 is usual)")
    num_ws = run.model.num_ws
    if cutoff is not None and not 0 <= int(cutoff) <= num_ws:
        raise ConfigError(f"--cutoff {cutoff}: give 0 .. {num_ws} (layers < cutoff are truncated; "
                          f"this generator has {num_ws} ws)")
    if centre not in CENTRES:
        raise ConfigError(f"--centre {centre!r}: choose {' or '.join(CENTRES)}")
    if centre == "class" and run.num_classes == 0:
        raise ConfigError(f"--centre class: {run.path} is unconditional; use --centre global")


def truncate(ws: np.ndarray, centre_w: np.ndarray, psi: float, cutoff: Optional[int] = None) -> np.ndarray:
    """ws [N, num_ws, w_dim] -> w_c + psi (w - w_c) on layers < cutoff (None = all); centre_w [w_dim]."""
    ws = np.asarray(ws, np.float32)
    if float(psi) == 1.0:
        return ws
    out = ws.copy()
    k = ws.shape[1] if cutoff is None else int(cutoff)
    out[:, :k] = centre_w + np.float32(psi) * (ws[:, :k] - centre_w)
    return out


def truncation_centre(run: Run, cls: ClassArg, centre: str = "global",
                      class_mean_n: int = 1000) -> np.ndarray:
    """The w [w_dim] truncation pulls towards: G's w_avg ('global') or `class_mean_w` ('class')."""
    return class_mean_w(run, cls, class_mean_n) if centre == "class" else w_avg(run)


def ws_for(run: Run, seeds: Sequence[int], cls: ClassArg = None, psi: float = 1.0,
           cutoff: Optional[int] = None, centre: str = "global", class_mean_n: int = 1000) -> np.ndarray:
    """ws [len(seeds), num_ws, w_dim] of `seeds` for class `cls` (name or index), truncated."""
    check_truncation(run, psi, cutoff, centre)
    idx = class_index(run, cls)
    ws = map_z(run, seed_z(seeds, run.z_dim), one_hot(run, idx, len(seeds)))
    if float(psi) == 1.0:
        return ws
    return truncate(ws, truncation_centre(run, idx, centre, class_mean_n), psi, cutoff)


def mix_ws(row_ws: np.ndarray, col_ws: np.ndarray, layers: Sequence[int]) -> np.ndarray:
    """[R, C, num_ws, w_dim]: cell (r, c) is row_ws[r] with col_ws[c] on `layers` (NVIDIA's mixing).

    row_ws [R, num_ws, w_dim], col_ws [C, num_ws, w_dim]; no layers gives the row ws, all the col ws."""
    r, c = len(row_ws), len(col_ws)
    out = np.repeat(np.asarray(row_ws, np.float32)[:, None], c, axis=1)
    layers = list(layers)
    if layers:
        out[:, :, layers] = np.asarray(col_ws, np.float32)[None, :, layers]
    return out.reshape(r, c, *row_ws.shape[1:])


def style_mix(run: Run, row_seeds: Sequence[int], col_seeds: Sequence[int], layers: Sequence[int],
              cls: ClassArg = None, psi: float = 1.0, cutoff: Optional[int] = None, centre: str = "global",
              class_mean_n: int = 1000) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row_ws [R, num_ws, w_dim], col_ws [C, ...], mixed [R, C, num_ws, w_dim]); see `mix_ws`."""
    bad = [i for i in layers if not 0 <= int(i) < run.model.num_ws]
    if bad:
        raise ConfigError(f"--layers: {bad} out of range; this generator has {run.model.num_ws} ws "
                          f"(layers 0-{run.model.num_ws - 1})")
    cells = len(row_seeds) * len(col_seeds)               # before the [R, C, num_ws, w_dim] ws are made
    if cells > MAX_FRAMES:
        raise ConfigError(f"--rows x --cols: {len(row_seeds)} x {len(col_seeds)} = {cells:,} cells, over the "
                          f"{MAX_FRAMES} one grid holds; give fewer row or column seeds")
    ws = ws_for(run, list(row_seeds) + list(col_seeds), cls, psi, cutoff, centre, class_mean_n)
    row_ws, col_ws = ws[:len(row_seeds)], ws[len(row_seeds):]
    return row_ws, col_ws, mix_ws(row_ws, col_ws, layers)


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation between vectors a, b [D] (lerp when they are nearly parallel)."""
    cos = float(np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if omega < 1e-6:
        return (1 - t) * a + t * b
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def interp_weights(num_seeds: int, steps: int) -> List[Tuple[int, float]]:
    """(segment, t) of each frame: `steps` frames from each seed towards the next, then the last seed."""
    return [(i, k / steps) for i in range(num_seeds - 1) for k in range(steps)] + [(num_seeds - 2, 1.0)]


def interpolate(run: Run, seeds: Sequence[int], steps: int, space: str = "w", cls: ClassArg = None,
                psi: float = 1.0, cutoff: Optional[int] = None, centre: str = "global",
                class_mean_n: int = 1000) -> np.ndarray:
    """ws [(S-1) steps + 1, num_ws, w_dim] through the S seeds: lerp of their (truncated) ws in
    'w', or slerp of their z then mapping and truncation in 'z'. Frame k*steps is seed k exactly."""
    if len(seeds) < 2:
        raise ConfigError(f"--seeds {','.join(map(str, seeds))}: give at least two seeds to travel between")
    if int(steps) < 1:
        raise ConfigError(f"--steps {steps}: give at least 1 frame per pair of seeds")
    count = (len(seeds) - 1) * int(steps) + 1           # before any per-frame list is made
    if count > MAX_FRAMES:
        raise ConfigError(f"--steps {steps} with {len(seeds)} seeds: {count:,} frames, over the {MAX_FRAMES} "
                          f"one strip and GIF hold; give at most --steps {max(1, (MAX_FRAMES - 1) // (len(seeds) - 1))}"
                          " or fewer seeds")
    if space not in SPACES:
        raise ConfigError(f"--space {space!r}: choose {' or '.join(SPACES)}")
    frames = interp_weights(len(seeds), int(steps))
    if space == "w":
        ws = ws_for(run, seeds, cls, psi, cutoff, centre, class_mean_n)
        return np.stack([(1 - t) * ws[i] + t * ws[i + 1] if 0 < t < 1 else ws[i + int(t)] for i, t in frames])
    check_truncation(run, psi, cutoff, centre)
    idx = class_index(run, cls)
    z = seed_z(seeds, run.z_dim)
    zs = np.stack([slerp(z[i], z[i + 1], t) if 0 < t < 1 else z[i + int(t)] for i, t in frames])
    ws = map_z(run, zs.astype(np.float32), one_hot(run, idx, len(zs)))
    if float(psi) == 1.0:
        return ws
    return truncate(ws, truncation_centre(run, idx, centre, class_mean_n), psi, cutoff)


@functools.lru_cache(maxsize=16)
def _synthesizer(model, noise_mode: str):
    """ws [B, num_ws, w_dim], noise seeds uint32 [B] -> images [B, R, R, C] float32, jitted."""
    def one(v, w, seed):
        img = model.apply(v, w[None], noise_mode=noise_mode, method=type(model).synthesize,
                          rngs={"noise": jax.random.key(seed)})
        return img[0].astype(jnp.float32)
    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))


def render(run: Run, ws: np.ndarray, noise_mode: str = "const", noise_seeds: Optional[Sequence[int]] = None,
           progress=None) -> np.ndarray:
    """Images float32 [N, R, R, C] in about [-1, 1] from ws [N, num_ws, w_dim].

    noise_mode: 'const' (G's fixed noise buffers), 'random' (noise from the key of
    noise_seeds[i], default i: reproducible per image), 'none'. progress: a
    jaxgen.utils.progress.Progress updated per batch."""
    if noise_mode not in NOISE_MODES:
        raise ConfigError(f"--noise_mode {noise_mode!r}: choose {', '.join(NOISE_MODES)}")
    ws = check_ws(run, ws, "ws")
    n = len(ws)
    seeds = np.arange(n) if noise_seeds is None else np.asarray(noise_seeds)
    seeds = seeds.astype(np.uint32)
    fn, out = _synthesizer(run.model, noise_mode), []
    for i in range(0, n, SYNTH_BATCH):
        m = min(SYNTH_BATCH, n - i)
        img = fn(run.variables, _pad(ws[i:i + m], SYNTH_BATCH), _pad(seeds[i:i + m], SYNTH_BATCH))
        out.append(np.asarray(img)[:m])
        if progress is not None:
            progress.update(m)
    r = run.resolution
    return np.concatenate(out) if out else np.zeros([0, r, r, run.channels], np.float32)


def check_ws(run: Run, ws, name: str) -> np.ndarray:
    """ws as float32 [N, num_ws, w_dim] (from [num_ws, w_dim] too); ConfigError naming `name`."""
    a = np.asarray(ws)
    want = (run.model.num_ws, run.model.w_dim)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[1:] != want or len(a) == 0:
        raise ConfigError(f"{name}: shape {list(np.shape(ws))}, but {run.path} takes ws of shape "
                          f"[N, {want[0]}, {want[1]}] (or [{want[0]}, {want[1]}])")
    if not np.issubdtype(a.dtype, np.floating) or not np.all(np.isfinite(a)):
        raise ConfigError(f"{name}: ws must be finite floating-point numbers (got {a.dtype})")
    return a.astype(np.float32)


def load_projected_w(path, run: Run, flag: str = "--projected_w") -> np.ndarray:
    """ws [N, num_ws, w_dim] from a projector's .npz (key 'w', NVIDIA's [1, num_ws, w_dim];
    [num_ws, w_dim] and [N, num_ws, w_dim] too) or a .npy array; no pickles are read."""
    p = pathlib.Path(path)
    if not p.is_file():
        raise ConfigError(f"{flag} {path}: no such file; give the projector's projected_w.npz")
    try:
        data = np.load(p, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                data = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError) as e:
        raise ConfigError(f"{flag} {path}: not a NumPy .npz/.npy file of numbers ({e})") from None
    if isinstance(data, dict):
        if "w" not in data:
            raise ConfigError(f"{flag} {path}: no array 'w' (it has {', '.join(data) or 'none'}); "
                              "give a projector's projected_w.npz")
        data = data["w"]
    return check_ws(run, data, f"{flag} {path}")
