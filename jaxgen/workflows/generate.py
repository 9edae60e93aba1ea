"""Write a synthetic image-folder dataset from a trained generator, checked and with its datasheet.

  python -m jaxgen.workflows.generate --checkpoint runs/acne_tiny --out data/synthetic_tiny \
      --num_per_class 64 [--classes healthy,severe] [--psi 1.0] [--seed 0] [--best] \
      [--real DIR] [--holdout DIR] [--identity auto|dlib|pixel] [--no_datasheet]

Any generator run `jaxgen.runs.open_run` opens (StyleGAN2 or DCGAN workdir,
networks directory, NVIDIA .pkl). One sub-folder per class
(`<class>/<class>_00012.png`, class names from the run's run.json; `--classes`
picks some of them by name). Candidate i of class c always comes from the latent
seed (seed, c, i), whichever classes are picked.

No unchecked export: every candidate is checked against the generator's real
training faces (--real, default the run's own config.json data) and one closer
than the identity model's threshold to any of them is refused (not written; its
file number stays unused); more candidates are drawn until num_per_class pass,
and a class where fewer than one in --max_tries pass stops the export with an
error (the generator copies its training faces). Identity models
(jaxgen/evolve/identity.py): dlib's face descriptor (threshold 0.6); 'auto' uses
the pixel near-copy check, which is NOT an identity model, for a run trained on the
drawn demo faces, which dlib cannot tell apart. `metadata.jsonl` has one line per
image: file, class, latent seed, truncation psi, generator, and `identity`: the
nearest real file, its distance, the threshold and the model.

The datasheet (jaxgen/metrics/datasheet.py: fidelity, diversity, privacy,
identity) is written beside the images (datasheet.json, datasheet.md,
nearest_real.png, images.csv) against the real training faces and held-out real
faces (--holdout, default for demo data: its `_test` render); --no_datasheet
skips it.

Resumable: images already present are re-checked and kept, so an interrupted
export continues where it stopped. --out must be new, empty or an earlier
generate output (its `.jaxgen-output.json` marker); a folder of other files, a
missing --real/--holdout, or class names the real folder lacks are refused
before anything is written (`jaxgen.utils.outputs`). Paths are checked to stay
inside --out. Progress (images, rate, ETA) is printed every 10 s.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from jaxgen.cli import run_main, use_compile_cache
from jaxgen.data import load_dataset
from jaxgen.data.demo_faces import write_demo_holdout
from jaxgen.data.folder import ImageDataset, load_image_folder
from jaxgen.errors import ConfigError
from jaxgen.evolve.identity import IdentityCheck, make_embedder
from jaxgen.metrics.datasheet import datasheet_for_export
from jaxgen.metrics.suite import make_feature_net
from jaxgen.runs import GENERATOR_KINDS, Run, open_run
from jaxgen.utils.files import inside, png_complete, save_png_atomic, write_text_atomic
from jaxgen.utils.images import to_uint8
from jaxgen.utils.outputs import check_output, claim_output
from jaxgen.utils.progress import Progress

OUTPUT_KIND = "generate"
DRAWN = ("demo", "depth_demo")   # the embedded drawn faces: dlib cannot tell them apart


@dataclasses.dataclass
class Checks:
    """What every export is checked and described against (see `prepare_checks`)."""

    train: ImageDataset                 # the generator's real training faces
    holdout: Optional[ImageDataset]     # real faces it never saw (None: no datasheet)
    identity: IdentityCheck             # train embedded once
    source: str                         # where train came from, for the records


def _legacy_output(folder: pathlib.Path) -> bool:
    """True for a generate output written before the marker: its metadata.jsonl rows."""
    try:
        first = (folder / "metadata.jsonl").read_text().split("\n", 1)[0]
        row = json.loads(first)
    except (OSError, ValueError):
        return False
    return isinstance(row, dict) and {"latent_seed", "checkpoint", "class_name"} <= set(row)


def _run_data(g: Run) -> Optional[Dict[str, Any]]:
    """The `data` section of the run's config.json (None: no readable one, e.g. an NVIDIA .pkl)."""
    try:
        data = json.loads((pathlib.Path(g.path) / "config.json").read_text()).get("data")
    except (OSError, ValueError, AttributeError):
        return None
    return data if isinstance(data, dict) and data.get("source") in ("folder",) + DRAWN else None


def _training_faces(g: Run, checkpoint: str, real: str, data: Optional[dict]) -> Tuple[ImageDataset, str]:
    """The generator's real training faces at its resolution: --real, else its config's data."""
    if real:
        if not pathlib.Path(real).is_dir():
            raise ConfigError(f"--real {real}: not a folder; give the generator's training images "
                              "(class sub-folders)")
        return load_image_folder(real, g.resolution, g.channels, cache_dir=None), real
    if data is None:
        raise ConfigError(f"--real: {checkpoint} does not say which faces it was trained on; give "
                          "--real <folder of its training images>: every export is checked against them")
    return load_dataset(data), str(data["path"])


def _holdout_faces(g: Run, holdout: str, data: Optional[dict], names: Sequence[str]) -> ImageDataset:
    """Held-out real faces for the datasheet: --holdout, else a demo run's `_test` render."""
    if not holdout:
        if data is None or data.get("source") != "demo":
            raise ConfigError("--holdout: give held-out real faces the generator never saw (class "
                              "sub-folders) for the export's datasheet, or --no_datasheet to skip it")
        holdout = write_demo_holdout(data, names)
    elif not pathlib.Path(holdout).is_dir():
        raise ConfigError(f"--holdout {holdout}: not a folder; give held-out real images (class sub-folders)")
    return load_image_folder(holdout, g.resolution, g.channels, cache_dir=None)


def prepare_checks(g: Run, checkpoint: str, picked: Sequence[str], real: str = "", holdout: str = "",
                   identity: str = "auto", threshold: float = -1.0, datasheet: bool = True,
                   log=print) -> Checks:
    """Load and embed what the export is checked against; one-line errors name the flag."""
    data = _run_data(g)
    train, source = _training_faces(g, checkpoint, real, data)
    unconditional = list(picked) == ["all"]     # one class: compared with every real face
    missing = [] if unconditional else [n for n in picked if n not in train.class_names]
    if missing:
        raise ConfigError(f"--real {source} has no class {', '.join(map(repr, missing))} of the generator "
                          f"(it has {', '.join(train.class_names)}); give the folder it was trained on")
    hold = _holdout_faces(g, holdout, data, train.class_names) if datasheet else None
    if identity == "auto":
        identity = "pixel" if not real and data is not None and data["source"] in DRAWN else "dlib"
    if identity not in ("dlib", "pixel"):
        raise ConfigError(f"--identity={identity!r}: use 'auto', 'dlib' or 'pixel' (every export is checked)")
    embedder = make_embedder(identity, threshold)
    try:
        check = IdentityCheck(embedder, train.images, train.paths).require()
    except ValueError as e:
        raise ConfigError(f"--real {source}: {e}") from None
    log(f"generate: identity check against {len(train)} real faces from {source} with {check.name} "
        f"(threshold {check.threshold:g})" + ("; the pixel check is NOT an identity model, it finds "
                                               "near-copies only" if identity == "pixel" else ""))
    return Checks(train, hold, check, source)


def pick_classes(g: Run, checkpoint: str, class_names: Optional[Sequence[str]] = None,
                 classes: Optional[Sequence[str]] = None) -> List[Tuple[int, str]]:
    """(class index, name) of the classes to export: all, or those named in `classes`.

    class_names renames the generator's classes (for a run without names).
    """
    k = g.num_classes
    names = list(class_names or g.class_names or ["all"])
    if k and len(names) != k:
        raise ConfigError(f"{len(names)} class names for the generator {checkpoint} with {k} classes")
    if not classes:
        return list(enumerate(names))
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise ConfigError(f"--classes: {', '.join(map(repr, unknown))} not among the classes of "
                          f"{checkpoint} ({', '.join(names)}); pick some of those")
    return [(ci, n) for ci, n in enumerate(names) if n in classes]


def export_dataset(checkpoint: str, out: str, num_per_class: int, psi: float = 1.0, seed: int = 0,
                   best: bool = False, batch: int = 32, class_names: Optional[list] = None,
                   classes: Optional[Sequence[str]] = None, progress_every: float = 10.0,
                   real: str = "", holdout: str = "", identity: str = "auto", threshold: float = -1.0,
                   datasheet: bool = True, feature_net: str = "random_inception", inception_weights: str = "",
                   max_tries: float = 4.0, log=print) -> dict:
    """Write num_per_class checked images per class of the generator run `checkpoint` into `out`
    (resumable), then its datasheet.

    classes: names of the classes to write (default all). Returns {'out', 'written' (new
    images), 'total' (rows of metadata.jsonl), 'classes', 'refused' (per class), 'datasheet'}.
    """
    out_dir = check_output(out, OUTPUT_KIND, legacy=_legacy_output)   # before opening anything
    if int(num_per_class) < 1:
        raise ConfigError(f"--num_per_class={num_per_class}: give at least 1 image per class")
    if float(max_tries) < 1:
        raise ConfigError(f"--max_tries={max_tries}: give at least 1 (candidates per wanted image)")
    g = open_run(checkpoint, "best" if best else "latest", kinds=GENERATOR_KINDS)
    picked = pick_classes(g, checkpoint, class_names, classes)
    checks = prepare_checks(g, checkpoint, [n for _, n in picked], real, holdout, identity, threshold,
                            datasheet, log)
    net = make_feature_net(inception_weights, feature_net) if datasheet else None
    claim_output(out_dir, OUTPUT_KIND, legacy=_legacy_output)
    bar = Progress(num_per_class * len(picked), "generate: images", every=progress_every)
    records, refused, written = {}, {}, 0
    for ci, name in picked:
        w = _Writer(g, inside(out_dir, out_dir / name), name, ci, checks.identity, psi, seed, batch)
        got = w.run(int(num_per_class), int(np.ceil(max_tries * num_per_class)), bar)
        records.update(got)
        refused[name], written = w.refused, written + w.new
        log(f"generate: {name}: {num_per_class} images ({w.new} new), {w.refused} candidates "
            f"refused within {checks.identity.threshold:g} of a real face")
    rows = _metadata(out_dir, picked, records, psi, seed, checkpoint)
    sheet = None
    if datasheet:
        meta = dict(generator=str(checkpoint), psi=psi, seed=seed, real_train=checks.source,
                    refused_near_copies=refused)
        sheet = datasheet_for_export(out_dir, checks.train, checks.holdout, net, checks.identity, meta)
        log(f"generate: datasheet: membership AUC {sheet['privacy']['membership_auc']:.3f}, DCR ratio "
            f"{sheet['privacy']['dcr']['ratio']:.3f} -> {out_dir / 'datasheet.md'}")
    return dict(out=str(out_dir), written=written, total=len(rows), classes=[n for _, n in picked],
                refused=refused, datasheet=sheet)


class _Writer:
    """Candidates i = 0, 1, ... of one class, `batch` at a time, until `want` pass the identity
    check: a file already there is re-checked (and removed if it fails), a new one generated."""

    def __init__(self, g: Run, cdir: pathlib.Path, name: str, ci: int, check: IdentityCheck, psi: float,
                 seed: int, batch: int):
        self.g, self.cdir, self.name, self.ci, self.check = g, cdir, name, ci, check
        self.psi, self.seed, self.batch = psi, seed, batch
        self.new = self.refused = 0

    def _images(self, ids: List[int]) -> Tuple[np.ndarray, set]:
        """(uint8 [len(ids), H, W, C], positions read from disk): the PNG on disk where complete,
        else generated now."""
        paths = [self.cdir / f"{self.name}_{i:05d}.png" for i in ids]
        todo = [k for k, p in enumerate(paths) if not png_complete(p)]
        out = [None] * len(ids)
        if todo:
            # Latent i of class ci comes from seed (seed, ci, i): re-runs reproduce every image.
            z = np.stack([np.random.default_rng([self.seed, self.ci, ids[k]]).standard_normal(self.g.z_dim)
                          for k in todo]).astype(np.float32)
            for k, img in zip(todo, to_uint8(self.g.generate(z, np.full(len(todo), self.ci), self.psi))):
                out[k] = img
        for k, p in enumerate(paths):
            if out[k] is None:
                with Image.open(p) as im:
                    a = np.asarray(im)
                out[k] = a[..., None] if a.ndim == 2 else a
        return np.stack(out), {k for k in range(len(ids)) if k not in todo}

    def run(self, want: int, most: int, bar: Progress) -> Dict[str, dict]:
        """{file: identity record} of the first `want` candidates that pass; ConfigError when
        `most` candidates leave fewer."""
        self.cdir.mkdir(exist_ok=True)
        records: Dict[str, dict] = {}
        i = 0
        while len(records) < want:
            if i >= most:
                raise ConfigError(
                    f"generate: {self.name}: only {len(records)} of {i} candidates passed the identity "
                    f"check ({self.refused} within {self.check.threshold:g} of a training face by "
                    f"{self.check.name}): this generator reproduces its training faces. Retrain it "
                    "(more faces, fewer kimg, ADA) or raise --max_tries to keep drawing")
            ids = list(range(i, min(i + self.batch, most)))
            imgs, on_disk = self._images(ids)
            result, before = self.check.check(imgs), len(records)
            for k, idx in enumerate(ids):
                path = self.cdir / f"{self.name}_{idx:05d}.png"
                if not result["passed"][k]:
                    self.refused += 1
                    path.unlink(missing_ok=True)    # a kept file that no longer passes
                elif len(records) < want:
                    if k not in on_disk:
                        save_png_atomic(path, imgs[k])
                        self.new += 1
                    records[f"{self.name}/{path.name}"] = dict(self.check.record(result, k), latent_index=idx)
            bar.update(len(records) - before)
            i = ids[-1] + 1
        return records


def _metadata(out_dir: pathlib.Path, picked: List[Tuple[int, str]], records: Dict[str, dict], psi: float,
              seed: int, checkpoint: str) -> List[Dict]:
    """Write metadata.jsonl: the rows of the classes written now, after the earlier rows of others."""
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
        rows.append(dict(file=file, class_name=name, class_index=index[name],
                         latent_seed=[seed, index[name], rec.pop("latent_index")], psi=psi,
                         checkpoint=str(checkpoint), identity=rec))
    rows.sort(key=lambda r: (r.get("class_index", 0), r["file"]))
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))
    return rows


def main(argv=None) -> int:
    """Command line: the generator, the output folder, what to generate and what to check against."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="generator run, networks dir or NVIDIA .pkl")
    p.add_argument("--out", required=True, help="dataset folder: new, empty or an earlier generate output")
    p.add_argument("--num_per_class", type=int, default=64)
    p.add_argument("--classes", default="", help="comma-separated class names (default: all)")
    p.add_argument("--psi", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--best", action="store_true", help="use the best-FID checkpoint of a workdir")
    p.add_argument("--real", default="", help="the generator's training faces (default: its config's data)")
    p.add_argument("--holdout", default="", help="held-out real faces for the datasheet (default: demo _test)")
    p.add_argument("--identity", default="auto", help="auto | dlib | pixel (pixel: near-copies only)")
    p.add_argument("--identity_threshold", type=float, default=-1.0, help="default: the model's (dlib 0.6)")
    p.add_argument("--max_tries", type=float, default=4.0, help="candidates per wanted image before giving up")
    p.add_argument("--no_datasheet", action="store_true", help="skip the datasheet (no holdout at hand)")
    p.add_argument("--feature_net", default="random_inception",
                   help="datasheet features without --inception_weights (labelled not comparable)")
    p.add_argument("--inception_weights", default="", help="the FID Inception .pth (comparable numbers)")
    a = p.parse_args(argv)
    use_compile_cache()
    classes = [c.strip() for c in a.classes.split(",") if c.strip()]
    r = export_dataset(a.checkpoint, a.out, a.num_per_class, a.psi, a.seed, a.best, classes=classes,
                       real=a.real, holdout=a.holdout, identity=a.identity, threshold=a.identity_threshold,
                       datasheet=not a.no_datasheet, feature_net=a.feature_net,
                       inception_weights=a.inception_weights, max_tries=a.max_tries)
    print(f"wrote {r['written']} new images; {r['total']} in {r['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
