"""The datasheet of synthetic images on disk: check and read the folders, then measure and write.

  python evaluate.py datasheet --synthetic runs/pipeline/synthetic --real data/demo_acne \\
      --holdout data/demo_acne_test --feature_net random_inception --identity pixel --out runs/sheet

`datasheet_for_folders` (evaluate.py datasheet, the pipeline) takes a synthetic folder, the
real training folder (what the generator saw) and a real holdout folder (what it never saw),
all with the same class sub-folders; `datasheet_for_export` (generate's export) scores an
export's own folder beside its images. Both read exactly the images an export's metadata.jsonl
lists (`synthetic_images`), build the identity check on the training faces, and hand the sets
to jaxgen/metrics/datasheet.py, whose `compute` measures and `write` writes datasheet.json/.md,
nearest_real.png and images.csv. `datasheet_for_folders` may also run the utility benchmark
(jaxgen/classifiers/utility.py) and the projection membership AUC of a generator run.
"""
from __future__ import annotations

import json
import pathlib
import warnings
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
from PIL import Image

from jaxgen.classifiers.utility import run_utility
from jaxgen.data import load_image_folder
from jaxgen.data.folder import ImageDataset, prepare_image, scan_image_folder
from jaxgen.errors import ConfigError
from jaxgen.identity import search as identity_models
from jaxgen.identity.search import IdentityCheck
from jaxgen.metrics import task_features
from jaxgen.metrics.datasheet import compute, write
from jaxgen.metrics.suite import FeatureNet, make_feature_net
from jaxgen.runs import open_run
from jaxgen.utils.files import inside
from jaxgen.utils.outputs import check_output, claim_output

OUTPUT_KIND = "datasheet"
PathLike = Union[str, pathlib.Path]


def make_embedder(kind: str, threshold: float = -1.0):
    """--identity: 'dlib' (threshold 0.6 unless given), 'pixel' (0.3; not an identity model) or 'none'."""
    if kind not in ("dlib", "pixel", "none"):
        raise ConfigError(f"--identity={kind!r}: use 'dlib', 'pixel' or 'none'")
    return identity_models.make_embedder(kind, threshold)


def _check_folders(folders: Dict[str, str]) -> tuple:
    """(class names, image side) of the labelled folders; one-line errors naming the flag."""
    names, side = None, None
    for flag, root in folders.items():
        if not root or not pathlib.Path(root).is_dir():
            raise ConfigError(f"{flag} {root or '(empty)'}: not a folder; give a folder of class sub-folders")
        items, classes = scan_image_folder(root)
        if len(classes) < 1 or not items:
            raise ConfigError(f"{flag} {root}: no images in class sub-folders")
        if names is None:
            names = classes
            with Image.open(items[0][0]) as im:
                side = min(im.size)
        elif classes != names:
            raise ConfigError(f"{flag} {root} has classes {classes}, but {next(iter(folders))} has "
                              f"{names}; the datasheet compares class by class, so they must match")
    return names, side


def utility_summary(result: Dict[str, Any], out: str) -> Dict[str, Any]:
    """The datasheet's utility section from a utility.json dict (jaxgen/classifiers/utility.py)."""
    arms = result["arms"]
    acc = {a: arms[a]["accuracy"] for a in arms}
    return dict(classifier=result["classifier"], seeds=result["seeds"], test=result["test"], report=out,
                real_train_acc=acc.get("real"), synthetic_train_acc=acc.get("synthetic"),
                real_plus_synthetic_acc=acc.get("real+synthetic"), gap=result.get("gap"))


def only_classes(ds: ImageDataset, names: Sequence[str]) -> ImageDataset:
    """`ds` with the classes `names` only, relabelled 0..len(names)-1 in that order; names
    ['all'] (an unconditional generator's one class) -> every image in one class 'all'."""
    if list(names) == ["all"] and list(ds.class_names) != ["all"]:
        return ImageDataset(ds.images, np.zeros(len(ds), np.int32), ["all"], list(ds.paths))
    index = {n: k for k, n in enumerate(names)}
    old = [index.get(n, -1) for n in ds.class_names]
    new = np.asarray(old, np.int32)[np.asarray(ds.labels)]
    keep = np.flatnonzero(new >= 0)
    return ImageDataset(ds.images[keep], new[keep], list(names), [ds.paths[i] for i in keep])


def listed_files(folder: PathLike) -> Optional[List[str]]:
    """The images an export's metadata.jsonl lists (paths relative to `folder`), or None when the
    folder has no metadata.jsonl of jaxgen's export rows (each with 'file' and 'class_name')."""
    try:
        rows = [json.loads(line) for line in (pathlib.Path(folder) / "metadata.jsonl").read_text().splitlines()
                if line.strip()]
    except (OSError, ValueError):
        return None
    if not rows or not all(isinstance(r, dict) and {"file", "class_name"} <= set(r) for r in rows):
        return None
    return [str(r["file"]) for r in rows]


def load_listed(folder: PathLike, files: Sequence[str], resolution: int,
                names: Optional[Sequence[str]] = None) -> ImageDataset:
    """The listed images of an export (RGB at `resolution`), classes = `names` (default: their
    sorted class folders), so the datasheet scores exactly what metadata.jsonl lists; ConfigError
    naming a listed file that is missing or unreadable (the export is incomplete: rerun it to
    resume) or in a class not among `names`."""
    root = pathlib.Path(folder)
    names = list(names or sorted({f.split("/", 1)[0] for f in files}))
    stray = sorted({f.split("/", 1)[0] for f in files} - set(names))
    if stray:
        raise ConfigError(f"{root}/metadata.jsonl lists images of class(es) {', '.join(stray)}, which the real "
                          f"folders lack ({', '.join(names)}); give real folders with the same classes")
    images = []
    for f in files:
        path = inside(root, root / f)
        try:
            with Image.open(path) as im:
                images.append(prepare_image(im, resolution, 3))
        except OSError as e:
            raise ConfigError(f"{root}/metadata.jsonl lists {f}, which cannot be read ({type(e).__name__}); "
                              "rerun the export into the same folder to resume it") from None
    labels = np.asarray([names.index(f.split("/", 1)[0]) for f in files], np.int32)
    return ImageDataset(np.stack(images), labels, names, [str(root / f) for f in files])


def synthetic_images(folder: PathLike, resolution: int, names: Optional[Sequence[str]] = None) -> ImageDataset:
    """The synthetic set a datasheet scores: the images metadata.jsonl lists for an export
    (generate, evolve; classes `names` if given), else every image of the class folders."""
    files = listed_files(folder)
    if files is not None:
        return load_listed(folder, files, resolution, names)
    with warnings.catch_warnings():   # nearest_real.png of an earlier sheet may lie in the folder
        warnings.filterwarnings("ignore", message="ignoring .* image")
        return load_image_folder(folder, resolution, 3, cache_dir=None)


def datasheet_for_folders(synthetic: str, real: str, holdout: str, out: str, inception_weights: str = "",
                          feature_net: str = "", identity_model: str = "dlib", threshold: float = -1.0,
                          resolution: int = 0, meta: Optional[Dict[str, Any]] = None,
                          utility: Optional[Dict[str, Any]] = None,
                          projection: Optional[Dict[str, Any]] = None,
                          feature_classifier: str = "") -> Dict[str, Any]:
    """Check the three folders and `out`, then compute and write the datasheet; returns it.

    utility: {'classifier_config', 'seeds', 'overrides'} also runs the utility benchmark (real
    train vs synthetic, tested on the holdout) into out/utility and adds its accuracies; a dict
    with 'real_train_acc' is a section measured elsewhere (utility_summary's keys), kept as is.
    projection: {'run': path, 'steps': N} adds the projection membership AUC (see compute).
    feature_classifier: a classifier workdir trained on the real faces (the pipeline's cls_real)
    adds the task_features section (see compute)."""
    folders = {"--real": real, "--synthetic": synthetic, "--holdout": holdout}
    names, side = _check_folders(folders)
    out_dir = check_output(out, OUTPUT_KIND)
    clf = task_features.open_feature_classifier(feature_classifier) if feature_classifier else None
    net = make_feature_net(inception_weights, feature_net)
    embedder = make_embedder(identity_model, threshold)
    if projection:
        projection = dict(projection, run=open_run(projection["run"], kinds=("stylegan2",)))
    res = int(resolution) or side
    train, hold = (load_image_folder(f, res, 3, cache_dir=None) for f in (real, holdout))
    syn = synthetic_images(synthetic, res, names)   # an export's: exactly the images it lists
    out_dir = claim_output(out_dir, OUTPUT_KIND)
    check = None if embedder is None else IdentityCheck(embedder, train.images, train.paths)
    sheet = compute(syn, train, hold, net, check, projection=projection, feature_classifier=clf)
    if utility and "real_train_acc" in utility:
        sheet["utility"] = dict(utility)
    elif utility:
        u_out = str(out_dir / "utility")
        result = run_utility(real, synthetic, holdout, utility["classifier_config"], u_out,
                             int(utility.get("seeds", 3)), res, overrides=utility.get("overrides", ()))
        sheet["utility"] = utility_summary(result, u_out)
    meta = dict(meta or {}, synthetic=str(synthetic), real_train=str(real), real_holdout=str(holdout),
                resolution=res)
    return write(out_dir, sheet, syn, train, meta)


def datasheet_for_export(out: pathlib.Path, train: ImageDataset, holdout: ImageDataset, net: FeatureNet,
                         check: IdentityCheck, meta: Dict[str, Any], feature_classifier=None) -> Dict[str, Any]:
    """The datasheet of an export's own folder `out` (class sub-folders), written into it beside
    the images: datasheet.json/.md, nearest_real.png, images.csv. train and holdout are cut to
    the classes `out` holds; identity uses the export's own check (every training face, embedded
    once). feature_classifier: a classifier workdir or Run trained on the real faces adds the
    task_features section."""
    res = int(train.images.shape[1])
    syn = synthetic_images(out, res)     # exactly the images its metadata.jsonl lists
    rgb = [ImageDataset(np.repeat(d.images, 3, -1) if d.images.shape[-1] == 1 else d.images,
                        d.labels, d.class_names, d.paths) for d in (train, holdout)]
    train, holdout = (only_classes(d, syn.class_names) for d in rgb)
    clf = task_features.open_feature_classifier(feature_classifier) if feature_classifier else None
    sheet = compute(syn, train, holdout, net, check, feature_classifier=clf)
    return write(out, sheet, syn, train, dict(meta, synthetic=str(out), resolution=res))
