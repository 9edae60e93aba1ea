"""One comparison table of generative methods: FID, KID, IS, nearest-real SSIM/PSNR, XGBoost.

Why: the depth-faces track asks whether the conditional DCGAN (with and without
EMA-teacher distillation, and after the genetic-algorithm export) beats simple
baselines (conditional VAE, per-class GMM / KDE on PCA) on the same real data.
`compare_methods` scores every method the same way and writes one table.

A method's *sample source* is a string or a mapping with 'kind':

* 'folder': generated images in class sub-folders (e.g. evolve.py's export);
  the first ``num_per_class`` per class are used;
* 'gan': any generator run `jaxgen.runs.open_run` opens (a StyleGAN2 or DCGAN
  workdir, a networks directory, an NVIDIA .pkl; a path that is a run is detected as one);
* 'vae' (options ``config``: VAEConfig fields, ``temperature``), 'gmm', 'kde'
  (other keys go to ``fit_density``): baselines fitted on the real train set here.

A mapping may add ``make``, the command that creates a missing path: a method
whose path does not exist is skipped and listed with that command.

Samples are cached in ``out_dir/samples/<method>/<class>/<class>_NNNNN.png`` (plus
samples.json, metrics.json), so a rerun regenerates and rescores nothing unchanged.
Metrics: FID, KID, IS (feature net; a fallback is named in the headers and flagged
NOT comparable with published numbers) vs the held-out *real test* images; mean
SSIM / PSNR of each sample and its nearest *real training* image (pixel L2; high =
close to or a copy of a training face; identical pairs are counted in
``exact_copies``, not in the PSNR mean); accuracy and macro F1 of XGBoost on
handcrafted features trained on the samples, tested on the real test images.
Outputs: comparison.md/.json, samples_<method>.png (a row per class), samples.png
(a labelled block per method, real test images first), xgb/<method>/report.md.
``out_dir`` must be new, empty or an earlier comparison (its
``.jaxgen-output.json`` marker, or the comparison.json / samples/ of one made
before the marker); it is checked before any data is loaded or rendered
(``jaxgen.utils.outputs``).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import pathlib
import shutil
import time
import warnings
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import jax
import numpy as np
from PIL import Image, ImageDraw

from jaxgen.baselines import density
from jaxgen.baselines.vae import sample_vae, train_vae
from jaxgen.data import load_image_folder, scan_image_folder
from jaxgen.data.depth_faces import write_depth_dataset
from jaxgen.errors import ConfigError
from jaxgen.features.xgb import synthetic_to_real_xgb
from jaxgen.metrics import image_quality, suite
from jaxgen.runs import GENERATOR_KINDS, fingerprint_files, is_run, open_run
from jaxgen.utils.files import write_text_atomic
from jaxgen.utils.images import to_uint8
from jaxgen.utils.logger import logger
from jaxgen.utils.outputs import check_output, claim_output

OUTPUT_KIND = "compare"
BASELINES = ("vae", "gmm", "kde")
KINDS = ("folder", "gan") + BASELINES
COLUMNS = (("fid", "FID ↓"), ("kid", "KID ↓"), ("is", "IS ↑"), ("ssim_nn", "SSIM-NN"),
           ("psnr_nn", "PSNR-NN dB"), ("exact_copies", "copies"), ("accuracy", "XGB acc ↑"),
           ("macro_f1", "XGB macro F1 ↑"))


def _legacy_comparison(folder: pathlib.Path) -> bool:
    """True for a comparison written before the output marker (comparison.json or samples/)."""
    return (folder / "comparison.json").is_file() or (folder / "samples").is_dir()


def check_compare_output(out_dir) -> pathlib.Path:
    """`out_dir` as a Path if a comparison may write there; else OutputError (creates nothing)."""
    return check_output(out_dir, OUTPUT_KIND, "--out", legacy=_legacy_comparison)


class SourceMissing(FileNotFoundError):
    """A method's sample source does not exist (yet); the row is skipped."""


@contextlib.contextmanager
def _quiet():
    """Silence the warning about the preview.png beside depth_faces' class folders."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"ignoring \d+ image")
        yield


def _load(folder, resolution: int, channels: int):
    with _quiet():
        return load_image_folder(folder, resolution, channels, cache_dir=None)


def _log(msg: str, verbose: bool = True) -> None:
    if verbose:
        logger.info(f"[compare] {msg}")


def parse_source(spec: Union[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """Normalise a sample source to a dict with 'kind' (see the module docstring).
    A path whose kind is not given is a 'gan' if it is a run (`jaxgen.runs.is_run`),
    else an image 'folder'."""
    d = {"kind": spec} if isinstance(spec, str) and spec in BASELINES else (
        {"path": spec} if isinstance(spec, (str, os.PathLike)) else dict(spec))
    if d.get("kind") in (None, "auto"):
        if not d.get("path"):
            raise ConfigError(f"sample source {spec!r} needs 'kind' ({', '.join(KINDS)}) or 'path'")
        d["kind"] = "gan" if is_run(d["path"]) else "folder"
    if d["kind"] not in KINDS:
        raise ConfigError(f"unknown sample source kind {d['kind']!r}; use one of {', '.join(KINDS)}")
    if d["kind"] in ("folder", "gan") and not d.get("path"):
        raise ConfigError(f"a {d['kind']!r} source needs 'path'")
    return dict(d, path=str(d["path"])) if d.get("path") else d


def _fingerprint(src: Dict[str, Any]) -> str:
    """Changes when a path source changes (files added/rewritten, a new generator export)."""
    root = pathlib.Path(src.get("path") or ".")
    files = {"folder": lambda: sorted(root.rglob("*.*")),
             "gan": lambda: fingerprint_files(root)}.get(src["kind"], list)()
    h = hashlib.sha256()
    for f in (f for f in files if f.is_file()):
        h.update(f"{f.relative_to(root)}:{f.stat().st_size}:{f.stat().st_mtime_ns};".encode())
    return h.hexdigest()[:16] if files else ""


def folder_per_class(path, class_names: Sequence[str], wanted: int) -> int:
    """min(wanted, the fewest images of a class in folder `path`); SourceMissing if a class has none."""
    with _quiet():
        items, found = scan_image_folder(path)
    have = {c: sum(found[y] == c for _, y in items) for c in class_names}
    if min(have.values()) == 0:
        raise SourceMissing(f"{path} has no images of class(es) {[c for c in have if not have[c]]}")
    return min(int(wanted), *have.values())


def _content_hash(*arrays: np.ndarray) -> str:
    h = hashlib.sha256(str([a.shape for a in arrays]).encode())
    for a in arrays:
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()[:16]


def _generate(src: Dict[str, Any], labels: np.ndarray, class_names: Sequence[str], train,
              resolution: int, channels: int, seed: int, model_dir: pathlib.Path,
              verbose: bool) -> np.ndarray:
    """uint8 [len(labels), R, R, C]: image i of class labels[i] (index into class_names)."""
    kind, k = src["kind"], len(class_names)
    if kind == "folder":
        ds = _load(src["path"], resolution, channels)
        idx = {c: [i for i, y in enumerate(ds.labels) if ds.class_names[y] == c] for c in class_names}
        return np.concatenate([ds.images[idx[c][:int(np.sum(labels == j))]]
                               for j, c in enumerate(class_names)])
    if kind == "gan":
        return _generate_from_run(src["path"], labels, class_names, resolution, channels, seed)
    if kind == "vae":   # trained (and saved into model_dir) whenever its samples are (re)made
        cfg = dict(src.get("config") or {}, seed=seed)
        _log(f"  training the VAE on {len(train.images)} real images ({cfg})", verbose)
        model, params, _ = train_vae(train.images, train.labels, k, cfg, model_dir, verbose=verbose)
        return sample_vae(model, params, labels, jax.random.key(seed),
                          temperature=float(src.get("temperature", 1.0)))
    kw = {a: b for a, b in src.items() if a not in ("kind", "make", "path")}
    kw.setdefault("seed", seed)
    _log(f"  fitting {kind.upper()} per class on {len(train.images)} real images", verbose)
    model = density.fit_density(train.images, train.labels, kind=kind, **kw)
    return density.sample_density(model, labels, seed=seed)


def _generate_from_run(path: str, labels: np.ndarray, class_names: Sequence[str], resolution: int,
                       channels: int, seed: int) -> np.ndarray:
    """uint8 [len(labels), R, R, C] from a generator run; z of block i from fold_in(key(seed), i)."""
    run = open_run(path, kinds=GENERATOR_KINDS)
    if (run.resolution, run.channels) != (resolution, channels):
        raise ConfigError(f"{path} makes {run.resolution} px x{run.channels} images, "
                          f"the comparison is at {resolution} px x{channels}; set the config's "
                          "resolution/channels to the generator's")
    names = list(run.class_names)
    if sorted(names) != sorted(class_names):
        raise ConfigError(f"{path} classes {names} differ from the real ones {list(class_names)}; "
                          "compare generators trained on these classes")
    g_labels = np.array([names.index(class_names[c]) for c in labels], np.int32)
    out = [run.generate(jax.random.normal(jax.random.fold_in(jax.random.key(seed), i),
                                          [len(g_labels[i:i + 256]), run.z_dim]), g_labels[i:i + 256])
           for i in range(0, len(g_labels), 256)]
    return to_uint8(np.concatenate(out))


def _save_png(img: np.ndarray, path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(path.with_suffix(".tmp.png"))
    path.with_suffix(".tmp.png").replace(path)


def _read_png(path: pathlib.Path, resolution: int, channels: int) -> Optional[np.ndarray]:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L" if channels == 1 else "RGB")).reshape(
                resolution, resolution, channels)
    except (OSError, ValueError):   # missing, unreadable or of another size
        return None


def cached_samples(name: str, src: Dict[str, Any], out_dir: pathlib.Path, class_names, train,
                   num_per_class: int, resolution: int, channels: int, seed: int, verbose=True):
    """(uint8 images [K*n, R, R, C], labels [K*n], manifest) of a method, generated
    only where the PNG cache in out_dir/samples/<name> is missing or stale."""
    folder = out_dir / "samples" / name
    manifest = dict(source=src, fingerprint=_fingerprint(src), num_per_class=num_per_class, seed=seed,
                    resolution=resolution, channels=channels, class_names=list(class_names))
    mpath = folder / "samples.json"
    old = json.loads(mpath.read_text()) if mpath.is_file() else None
    if old is not None and {k: old.get(k) for k in manifest} != json.loads(json.dumps(manifest)):
        _log(f"{name}: source or settings changed, discarding the cached samples", verbose)
        shutil.rmtree(folder)
        old = None
    labels = np.repeat(np.arange(len(class_names)), num_per_class).astype(np.int32)
    paths = [folder / c / f"{c}_{i:05d}.png" for c in class_names for i in range(num_per_class)]
    images = [_read_png(p, resolution, channels) if old is not None else None for p in paths]
    missing = [i for i, a in enumerate(images) if a is None]
    if missing:
        _log(f"{name}: generating {len(labels)} images ({num_per_class}/class) from "
             f"{src['kind']} {src.get('path', '')}".rstrip(), verbose)
        fresh = _generate(src, labels, class_names, train, resolution, channels, seed,
                          out_dir / "models" / name, verbose)
        for i in missing:
            images[i] = fresh[i]
            _save_png(fresh[i], paths[i])
        mpath.write_text(json.dumps(manifest, indent=2))
    else:
        _log(f"{name}: reusing {len(paths)} cached samples in {folder}", verbose)
    return np.stack(images), labels, manifest


def _finite(v):
    """JSON-safe: non-finite floats become None."""
    if isinstance(v, (dict, list, tuple)):
        return {k: _finite(x) for k, x in v.items()} if isinstance(v, dict) else [_finite(x) for x in v]
    v = v.item() if isinstance(v, np.generic) else v
    return None if isinstance(v, float) and not math.isfinite(v) else v


def score_method(name: str, fakes: np.ndarray, test, train, net, out_dir: pathlib.Path,
                 real_test_folder: str, seed: int = 0, xgb_params: Optional[Mapping] = None,
                 metric_cache_dir=None, verbose: bool = True) -> Dict[str, Any]:
    """Metrics of one method's samples, cached in out_dir/samples/<name> (module docstring)."""
    t0 = time.time()
    res = suite.compute_metrics(fakes, test.images, ("fid", "kid", "is"), net, metric_cache_dir)
    sfx = "" if net.comparable else f"_{net.name}"
    row: Dict[str, Any] = dict(method=name, num_images=int(len(fakes)),
                               num_per_class=int(len(fakes) // len(train.class_names)),
                               **{k: res[k + sfx] for k in ("fid", "kid", "kid_std", "is", "is_std")})
    pair = train.images[suite.nearest_real(fakes, train.images)]
    row["ssim_nn"] = image_quality.ssim(fakes, pair, data_range=255)[1]
    psnr = image_quality.psnr(fakes, pair, data_range=255)[0]
    ok = np.isfinite(psnr)
    row.update(psnr_nn=float(psnr[ok].mean()) if ok.any() else math.inf, exact_copies=int((~ok).sum()))
    with _quiet():
        rep = synthetic_to_real_xgb(out_dir / "samples" / name, real_test_folder, fakes.shape[1],
                                    fakes.shape[3], xgb_params=xgb_params, seed=seed, cache_dir=None,
                                    verbose=False, out_dir=out_dir / "xgb" / name,
                                    title=f"XGBoost: {name} -> real")
    row.update(accuracy=rep["accuracy"], macro_f1=rep["macro"]["f1"],
               xgb_report=str(out_dir / "xgb" / name / "report.md"),
               seconds=round(time.time() - t0, 2))
    _log(f"{name}: " + "  ".join(f"{h.rstrip(' ↑↓')} {_fmt(row[k])}" for k, h in COLUMNS)
         + f"  ({row['seconds']:.1f}s)", verbose)
    return row


def labelled_block(images: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                   title: str, cols: int = 8, cell: int = 48) -> Image.Image:
    """RGB image: `title` above one row per class (label on the left, `cols` images)."""
    k, r = len(class_names), images.shape[1]
    margin, head = 10 + 7 * max(len(c) for c in class_names), 20
    canvas = Image.new("RGB", (margin + cols * cell, head + k * cell), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), title, fill=(0, 0, 120))
    for c, name in enumerate(class_names):
        draw.text((4, head + c * cell + cell // 2 - 5), name, fill=(0, 0, 0))
        for j, img in enumerate(images[labels == c][:cols]):
            tile = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
            canvas.paste(tile.resize((cell, cell), Image.NEAREST if r < cell else Image.LANCZOS),
                         (margin + j * cell, head + c * cell))
    return canvas


def _fmt(v) -> str:
    if not isinstance(v, float):
        return "–" if v is None else str(v)
    return "inf" if math.isinf(v) else f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"


def markdown(result: Dict[str, Any]) -> str:
    """comparison.md: one table (a row per method) plus notes and skipped methods."""
    fn, s = result["feature_net"], result["settings"]
    heads = [h + ("" if result["comparable_to_published"] or key not in ("fid", "kid", "is")
                  else f" [{fn}]") for key, h in COLUMNS]
    lines = ["# Comparison of generative methods", "",
             "| method | source | images | " + " | ".join(heads) + " |",
             "| --- | --- | ---: | " + " | ".join("---:" for _ in heads) + " |"]
    for r in result["rows"]:
        lines.append(f"| {r['method']} | {r['source']} | {r['num_images']} | "
                     + " | ".join(_fmt(r.get(k)) for k, _ in COLUMNS) + " |")
    lines += ["", "Notes:", "",
              f"- {s['num_per_class']} images per class x {len(s['class_names'])} classes "
              f"({', '.join(s['class_names'])}) per method, {s['resolution']} px x{s['channels']}; "
              f"real train: {s['num_real_train']} images ({s['real_train_folder']}), real test: "
              f"{s['num_real_test']} held-out images ({s['real_test_folder']}).",
              f"- FID / KID / IS: features of `{fn}`, samples vs the real *test* images "
              f"(KID subsets of min(1000, n_fake, n_real)); IS from the same net's logits.",
              "- SSIM-NN / PSNR-NN: mean SSIM / PSNR (data range 255) between each sample and its "
              "nearest real *training* image in pixel L2; higher = closer to (or copying) a "
              "training face. copies: samples identical to a training image (not in the PSNR mean).",
              "- XGB: XGBoost on handcrafted LBP/HOG/Sobel/intensity features, trained on the "
              "method's samples, tested on the real test images (accuracy, macro F1).",
              f"- samples: samples.png, samples_<method>.png, samples/<method>/ (seed {s['seed']})."]
    few = [f"{r['method']} ({r['num_images']})" for r in result["rows"]
           if r["num_images"] < s["num_per_class"] * len(s["class_names"])]
    lines += [f"- fewer images than the others: {', '.join(few)}; FID is biased upward at "
              "smaller n (KID is unbiased)."] if few else []
    lines += ([f"- NOTE: features from the fallback network `{fn}`; FID/KID/IS here are NOT "
              "comparable with published numbers (only between rows of this table)."]
              if not result["comparable_to_published"] else [])
    if result["skipped"]:
        lines += ["", "Skipped:", ""] + [f"- {k['method']}: {k['reason']}" for k in result["skipped"]]
    return "\n".join(lines) + "\n"


def _method_samples(name: str, src: Dict[str, Any], out: pathlib.Path, names, train, num_per_class: int,
                    resolution: int, channels: int, seed: int, verbose: bool):
    """(fakes, labels, manifest) of one method, or SourceMissing/FileNotFoundError to skip it."""
    if src["kind"] in ("folder", "gan") and not pathlib.Path(src["path"]).exists():
        raise SourceMissing(f"{src['path']} does not exist")
    n = folder_per_class(src["path"], names, num_per_class) if src["kind"] == "folder" else num_per_class
    _log(f"{name}: WARNING only {n} images per class (not {num_per_class})", verbose and n < num_per_class)
    return cached_samples(name, src, out, names, train, n, resolution, channels, seed, verbose)


def _method_row(name: str, fakes, manifest, test, train, net, out: pathlib.Path, real_test_folder,
                seed: int, xgb_params, metric_cache_dir, verbose: bool) -> Dict[str, Any]:
    """The metrics row of one method, reused from samples/<name>/metrics.json when nothing changed."""
    key = json.dumps(dict(manifest, net=net.name, test=_content_hash(test.images, test.labels),
                          train=_content_hash(train.images), xgb=dict(xgb_params or {}),
                          samples=_content_hash(fakes)), sort_keys=True, default=str)
    mfile = out / "samples" / name / "metrics.json"   # json writes inf as Infinity
    cached = json.loads(mfile.read_text()) if mfile.is_file() else {}
    if cached.get("key") == key:
        _log(f"{name}: reusing cached metrics", verbose)
        return cached["row"]
    row = score_method(name, fakes, test, train, net, out, str(real_test_folder), seed, xgb_params,
                       metric_cache_dir, verbose)
    mfile.write_text(json.dumps(dict(key=key, row=row), indent=2))
    return row


def _save_sheet(blocks, path: pathlib.Path, gap: int = 6) -> None:
    """Stack the labelled per-method blocks vertically into one PNG."""
    sheet = Image.new("RGB", (max(b.width for b in blocks), sum(b.height + gap for b in blocks) - gap),
                      (255,) * 3)
    for i, b in enumerate(blocks):
        sheet.paste(b, (0, sum(x.height + gap for x in blocks[:i])))
    sheet.save(path)


def compare_methods(methods: Mapping[str, Any], real_train_folder, real_test_folder, out_dir,
                    num_per_class: int = 64, resolution: int = 32, channels: int = 1,
                    feature_net: Any = "random_inception", inception_weights: str = "",
                    seed: int = 0, xgb_params: Optional[Mapping[str, Any]] = None,
                    metric_cache_dir: Optional[str] = None, grid_cols: int = 8,
                    verbose: bool = True) -> Dict[str, Any]:
    """Score `methods` (name -> sample source, in order); write comparison.md/.json and
    samples*.png into `out_dir`. feature_net: a `suite.FeatureNet` or a fallback spec of
    `suite.make_feature_net` ('random_inception[:seed]', 'classifier:<workdir>'), used when
    `inception_weights` (FID Inception .pth) is empty. Returns {'rows', 'skipped',
    'feature_net', 'comparable_to_published', 'settings', 'files', 'seconds'}."""
    t0, out = time.time(), check_compare_output(out_dir)
    train = _load(real_train_folder, resolution, channels)
    test = _load(real_test_folder, resolution, channels)
    names = list(train.class_names)
    if set(test.class_names) - set(names):
        raise ConfigError(f"test classes {test.class_names} are not all among the train classes "
                          f"{names}; the real test folder needs the train folder's class names")
    net = feature_net if isinstance(feature_net, suite.FeatureNet) else \
        suite.make_feature_net(inception_weights, feature_net)
    claim_output(out, OUTPUT_KIND, "--out", legacy=_legacy_comparison)
    _log(f"{len(methods)} methods, {num_per_class}/class x {len(names)} classes at {resolution} px; "
         f"real train {len(train.images)}, real test {len(test.images)}; features: {net.name}", verbose)
    test_labels = np.array([names.index(test.class_names[i]) for i in test.labels])
    rows, skipped = [], []
    blocks = [labelled_block(test.images, test_labels, names, "real (test)", grid_cols)]
    for name, spec in methods.items():
        src = parse_source(spec)
        try:
            fakes, labels, manifest = _method_samples(name, src, out, names, train, num_per_class,
                                                      resolution, channels, seed, verbose)
        except FileNotFoundError as e:   # incl. SourceMissing
            reason = f"{e}" + (f"; make it with: `{src['make']}`" if src.get("make") else "")
            _log(f"{name}: SKIPPED ({reason})", verbose)
            skipped.append(dict(method=name, reason=reason))
            continue
        row = _method_row(name, fakes, manifest, test, train, net, out, real_test_folder, seed,
                          xgb_params, metric_cache_dir, verbose)
        rows.append(dict(row, source=src["kind"] + (f" {src['path']}" if src.get("path") else "")))
        blocks.append(labelled_block(fakes, labels, names, name, grid_cols))
        blocks[-1].save(out / f"samples_{name}.png")
    _save_sheet(blocks, out / "samples.png")
    settings = dict(num_per_class=num_per_class, resolution=resolution, channels=channels, seed=seed,
                    class_names=names, real_train_folder=str(real_train_folder),
                    real_test_folder=str(real_test_folder), num_real_train=len(train.images),
                    num_real_test=len(test.images), xgb_params=dict(xgb_params or {}))
    result = dict(rows=rows, skipped=skipped, feature_net=net.name, settings=settings,
                  comparable_to_published=bool(net.comparable), seconds=round(time.time() - t0, 1),
                  files={k: str(out / k) for k in ("comparison.md", "comparison.json", "samples.png")})
    return _write_result(out, result, verbose)


def _write_result(out: pathlib.Path, result: Dict[str, Any], verbose: bool) -> Dict[str, Any]:
    """comparison.md and comparison.json (non-finite numbers as null), and the table on stdout."""
    md = markdown(result)
    write_text_atomic(out / "comparison.md", md)
    write_text_atomic(out / "comparison.json", json.dumps(_finite(result), indent=2))
    _log(f"\n{md}", verbose)
    _log(f"written: {out / 'comparison.md'}, comparison.json, samples.png ({result['seconds']}s)", verbose)
    return result


def compare_from_config(config, out_dir: Optional[str] = None, inception_weights: str = "",
                        feature_net: str = "") -> Dict[str, Any]:
    """`compare_methods` as configs/depth_compare.py describes (renders missing depth-demo
    real sets first; config.methods in config.method_order). Arguments override the config.
    The output folder is checked before anything is rendered."""
    c = config
    check_compare_output(out_dir or c.out_dir)
    for part in (c.real_train, c.real_test):
        if part.get("source", "folder") == "depth_demo":
            write_depth_dataset(part.path, int(part.num_per_class), int(c.resolution),
                                int(part.seed), progress=False)
    plain = lambda v: v.to_dict() if hasattr(v, "to_dict") else v   # noqa: E731
    methods = {m: plain(c.methods[m]) for m in (c.get("method_order") or sorted(c.methods.keys()))}
    return compare_methods(methods, c.real_train.path, c.real_test.path, out_dir or c.out_dir,
                           int(c.num_per_class), int(c.resolution), int(c.channels),
                           feature_net or c.feature_net, inception_weights or c.inception_weights,
                           int(c.seed), plain(c.get("xgb_params")),
                           c.get("metric_cache_dir") or None, int(c.get("grid_cols", 8)))
