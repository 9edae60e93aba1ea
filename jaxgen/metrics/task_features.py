"""Fidelity in feature spaces that know the task: a classifier's and dlib's face descriptor.

Why: random-Inception features rate a synthetic export close to the real faces (FID, precision,
recall) while a classifier trained on that export does far worse on real faces. Distances in the
space the downstream task uses show what random features miss:

  classifier  the penultimate activation (global-average-pooled, the input of the logits
              Dense `predictions`) of a classifier trained on the REAL faces, e.g. the
              pipeline's sorter runs/<pipeline>/cls_real; D = 8 * width for small_cnn,
              2048 for resnet50v2 (jaxgen/classifiers/models.py, `return_features=True`)
  dlib        dlib's 128-d ResNet face descriptor (jaxgen/identity/dlib_embedder.py), for photos:
              only faces dlib's detector finds are embedded; drawn faces (the demo set) mostly
              are not, or are not told apart, and the section then says so instead of scoring

In both: the Frechet distance of Gaussians fitted to the two feature sets (formulas.
frechet_distance) and improved precision/recall with k=3 (formulas.precision_recall), of the
synthetic set against the real training set, beside the real holdout scored the same way (what
fresh real draws get; the classifier saw the training faces, so the holdout is the reference).

  feats = classifier_features(open_run("runs/pipeline/cls_real", kinds=("classifier",)), uint8_nhwc)
  task_fidelity(train_feats, synthetic_feats, holdout_feats)
      -> {fd, precision, recall, n_real, n_fake, holdout_as_synthetic: {fd, precision, recall, ...},
          fd_vs_holdout}
"""
from __future__ import annotations

import functools
from typing import Any, Dict, Optional

import jax
import numpy as np

from jaxgen.classifiers.evaluate import model_input
from jaxgen.classifiers.sorting import to_classifier_input
from jaxgen.identity.dlib_embedder import DlibEmbedder
from jaxgen.identity.embedder_interface import embed_with_status
from jaxgen.metrics import formulas, privacy
from jaxgen.runs import Run, open_run

__all__ = ["classifier_features", "task_fidelity", "dlib_descriptors", "dlib_fidelity",
           "classifier_fidelity", "datasheet_section", "open_feature_classifier"]

K_PR = 3                  # precision/recall neighbourhood, as the datasheet's diversity section
MIN_DLIB_EMBEDDED = 10    # fewer dlib descriptors in a set: no figures, a caveat instead
DLIB_LOW_SHARE = 0.9      # a set with fewer of its images embedded: a caveat
DLIB_SAME_SHARE = 0.05    # training faces within the threshold of another one above this: a caveat
# Fewer images a set than this x the feature dimensions: the FD gets a caveat. Measured on 32 px
# demo faces (renderer version 2, tests/metrics/test_task_features.py), 192 images a set: FD of
# 0.7 px-blurred / sharp holdout 0.53 - 4.9x over small_cnn seeds with D = 256, 4.8 - 9.0x with D = 64.
MIN_IMAGES_PER_DIM = 2


def open_feature_classifier(run) -> Run:
    """A classifier Run from a workdir path (or a Run, returned as is); RunError if not one."""
    return run if isinstance(run, Run) else open_run(str(run), kinds=("classifier",))


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _penultimate(model, variables, x_uint8, resolution: int, channels: int):
    """[B, H, W, C] uint8 -> [B, D] float32, the pooled activation before the logits Dense."""
    x = to_classifier_input(model_input(x_uint8), resolution, channels)
    _, feats = model.apply(variables, x, train=False, return_features=True)
    return feats


def classifier_features(run: Run, images_uint8: np.ndarray, batch: int = 64) -> np.ndarray:
    """Penultimate features [N, D] float32 of a classifier run for uint8 images [N, H, W, C].

    Images of any size and 1 or 3 channels are mapped to the run's resolution and channels as
    the sorter maps generated faces (antialiased resize, grey <-> RGB). The last batch is padded
    to `batch` images so that one program serves every batch (eval-mode BatchNorm: rows are
    independent, the padding changes nothing)."""
    images = np.asarray(images_uint8)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images [N, H, W, C], got {images.dtype} {images.shape}")
    out = []
    for i in range(0, len(images), batch):
        b = images[i:i + batch]
        pad = np.zeros((batch - len(b),) + b.shape[1:], np.uint8)
        f = _penultimate(run.model, run.variables, np.concatenate([b, pad]), int(run.resolution),
                         int(run.channels))
        out.append(np.asarray(f, np.float32)[:len(b)])
    return np.concatenate(out) if out else np.zeros([0, 0], np.float32)


def _scores(real: np.ndarray, fake: np.ndarray, k: int) -> Dict[str, Any]:
    """fd, precision, recall of `fake` [M, D] against `real` [N, D]; None where a set is too
    small (FD needs 2 samples a set, precision/recall more than k)."""
    fd = precision = recall = None
    if min(len(real), len(fake)) >= 2:
        fd = float(formulas.frechet_distance(*formulas.feature_stats(real), *formulas.feature_stats(fake)))
    if min(len(real), len(fake)) > k:
        precision, recall = (float(v) for v in formulas.precision_recall(real, fake, k=k))
    return dict(fd=fd, precision=precision, recall=recall, n_real=int(len(real)), n_fake=int(len(fake)))


def task_fidelity(real_feats, fake_feats, holdout_feats=None, k: int = K_PR) -> Dict[str, Any]:
    """Frechet distance and precision/recall (k) of fake [M, D] against real [N, D] features.

    With holdout_feats [H, D] (real images the feature net and the generator never saw) the
    same scores of the holdout go under 'holdout_as_synthetic' (the value fresh real draws
    get), and 'fd_vs_holdout' = fd / the holdout's fd (~1: as close as real faces)."""
    real, fake = np.asarray(real_feats, np.float64), np.asarray(fake_feats, np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be [N, D] with equal D, got {real.shape} and {fake.shape}")
    out = _scores(real, fake, k)
    if holdout_feats is not None:
        ref = _scores(real, np.asarray(holdout_feats, np.float64), k)
        out["holdout_as_synthetic"] = ref
        ok = out["fd"] is not None and ref["fd"] is not None and ref["fd"] > 0
        out["fd_vs_holdout"] = float(out["fd"] / ref["fd"]) if ok else None
    return out


def classifier_fidelity(run: Run, train, syn, hold, k: int = K_PR) -> Dict[str, Any]:
    """The datasheet's 'classifier' entry: task_fidelity in `run`'s penultimate space for uint8
    image sets train [N, ...], syn [M, ...], hold [H, ...], with the run's description."""
    feats = [classifier_features(run, np.asarray(x)) for x in (train, syn, hold)]
    dim, n = int(feats[0].shape[1]), min(len(f) for f in feats)
    caveat = ""
    if n < MIN_IMAGES_PER_DIM * dim:
        caveat = (f"a set has {n} images, fewer images than {MIN_IMAGES_PER_DIM} x the {dim} feature "
                  "dimensions: the Frechet distance is then mostly sampling noise (compare it with the "
                  "holdout's), precision/recall less so.")
    return dict(run=str(run.path), model=str(run.info.get("model", type(run.model).__name__)),
                feature_dim=dim, resolution=int(run.resolution), **task_fidelity(*feats, k=k), caveat=caveat)


def dlib_descriptors(embedder, images) -> np.ndarray:
    """dlib descriptors [E, 128] of the uint8 images [N, H, W, 3] in which dlib found a face
    (E <= N; no whole-image fallback: a descriptor of something that is not a face would
    only add noise to the distribution)."""
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = np.repeat(images, 3, -1)
    r = embed_with_status(embedder, images)
    return np.asarray(r.embeddings, np.float64)[np.asarray(r.ok, bool)]


def _dlib_caveat(counts: Dict[str, tuple], self_share: Optional[float], threshold: float) -> str:
    """The sentence(s) the dlib entry must carry: too few faces found, some not found, or
    descriptors that do not tell the training faces apart."""
    found = ", ".join(f"{e} of {n} {name}" for name, (e, n) in counts.items())
    if min(e for e, _ in counts.values()) < MIN_DLIB_EMBEDDED:
        return (f"dlib found a face in only {found} images (fewer than {MIN_DLIB_EMBEDDED} in a set): "
                "these are not face photos it can read (e.g. drawn faces), so its descriptor space "
                "says nothing about them; no figures.")
    notes = []
    if any(e < DLIB_LOW_SHARE * n for e, n in counts.values()):
        notes.append(f"dlib found a face in {found} images; the figures cover those only.")
    if self_share is not None and self_share > DLIB_SAME_SHARE:
        notes.append(f"{self_share:.0%} of the training faces lie within dlib's same-person distance "
                     f"({threshold:g}) of another training face: dlib does not tell these faces apart, "
                     "so distances in its space say little about them.")
    return " ".join(notes)


def dlib_fidelity(train, syn, hold, embedder=None, k: int = K_PR) -> Dict[str, Any]:
    """The datasheet's 'dlib' entry: task_fidelity over dlib descriptors of the uint8 image
    sets train, syn, hold ([N, H, W, C]), with the counts dlib could embed and a caveat.

    embedder: a DlibEmbedder (default: HOG detection, no fallback). Without dlib or its model
    files the entry says so (available False) instead of failing the datasheet."""
    try:
        embedder = embedder or DlibEmbedder(detect=True, detect_fallback=None)
    except (ImportError, OSError) as e:
        return dict(available=False, caveat=f"dlib is not available ({str(e).splitlines()[0]}); "
                    "install dlib-bin and face-recognition-models (requirements.txt) for this section.")
    sets = dict(train=train, synthetic=syn, holdout=hold)
    emb = {name: dlib_descriptors(embedder, x) for name, x in sets.items()}
    counts = {name: (len(emb[name]), len(x)) for name, x in sets.items()}
    self_share = None
    if len(emb["train"]) > 1:
        d = privacy.nearest(emb["train"], emb["train"], 1, exclude_self=True)[0][:, 0]
        self_share = float(np.mean(d <= embedder.threshold))
    out = dict(available=True, embedder=getattr(embedder, "name", type(embedder).__name__),
               embedded={name: e for name, (e, _) in counts.items()},
               images={name: n for name, (_, n) in counts.items()}, train_same_person_share=self_share,
               caveat=_dlib_caveat(counts, self_share, float(embedder.threshold)))
    if min(e for e, _ in counts.values()) >= MIN_DLIB_EMBEDDED:
        out.update(task_fidelity(emb["train"], emb["synthetic"], emb["holdout"], k=k))
    return out


def datasheet_section(run, train, syn, hold, dlib: bool = True, k: int = K_PR) -> Dict[str, Any]:
    """The datasheet's 'task_features' section for uint8 image sets train, syn, hold:
    {'classifier': classifier_fidelity(run, ...), 'dlib': dlib_fidelity(...)} ('dlib' only
    with dlib=True). run: a classifier Run or its workdir path."""
    out = dict(classifier=classifier_fidelity(open_feature_classifier(run), train, syn, hold, k=k))
    if dlib:
        out["dlib"] = dlib_fidelity(train, syn, hold, k=k)
    return out
