"""Identity embeddings for de-identification checks of synthetic faces.

What: an identity model maps a face image to a vector so that two photos of
the same person are close and photos of different people are far apart. The
de-identification check asks, for every synthetic (candidate) image, how far
its identity vector is from the nearest training (reference) identity; a
candidate closer than the model's same-person threshold looks like a copy of
a training patient and must be rejected.

Why: a generator can memorise training faces. Pixel or feature-net
(Inception) distances do not measure *who* a face is; a face-recognition
descriptor does. An image the model cannot embed (no face found) is never
counted as "anonymous": it is reported with its reason and fails the check.

Embedders (all take uint8 images [N, H, W, 3], RGB, and return
`(embeddings float32 [N, D], ok bool [N])`; rows with ok=False are zeros):

  DlibEmbedder  dlib's ResNet face descriptor (D=128, threshold 0.6, dlib's
                same-person Euclidean distance). Face found with dlib's HOG
                frontal detector (or its CNN detector), 5-point landmarks,
                aligned 150x150 chip, descriptor. Needs the `dlib-bin` and
                `face-recognition-models` packages; the model files ship in
                the latter, nothing is downloaded.
  PixelEmbedder pure JAX: downsampled (antialiased), mean-centred,
                unit-norm pixels. NOT an identity model - it only says
                "these pixels are nearly the same picture". For tests and CPU
                demos on drawn faces, where dlib is missing or cannot tell
                the cartoons apart (below).

On the procedural demo faces (jaxgen.data.demo_faces, 128 px) dlib's HOG
detector finds about 2 faces in 3 at 64-256 px (15-19 of 24; the rest need
`detect_fallback="whole"`);
near-copies are 0.0-0.27 from their original, but different drawn faces are
only 0.35-0.61 apart, mostly under 0.6: dlib flags copies of drawn faces, yet
calls most different cartoon faces "the same person". Judge real or
photo-realistic GAN faces with it, not the cartoons.

Functions: `make_embedder(kind)` (what a --identity flag names),
`nearest_identity(query, reference) -> (distance [N], index [N])`,
`IdentityCheck(embedder, references, files).check(images)` (references embedded once;
the per-image records every export path writes; a pixel check is shift-tolerant and,
without a given threshold, calibrated on the references by
`calibrate_near_copy(embedder, references, ref_emb)`) and
`deidentification_report(candidates, references, embedder) -> dict`.
"""
from __future__ import annotations

import importlib.util
import os
import threading
from typing import List, NamedTuple, Optional, Protocol, Sequence, Tuple, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

__all__ = ["IdentityEmbedder", "EmbedResult", "DlibEmbedder", "PixelEmbedder",
           "nearest_identity", "deidentification_report", "dlib_model_dir", "make_embedder",
           "IdentityCheck", "calibrate_near_copy"]

# Per-image status strings (EmbedResult.status).
DETECTED = "detected"                # a face detector found the face
WHOLE_IMAGE = "whole_image_fallback"  # no detection; the whole image was the face box
NO_FACE = "no_face_detected"         # no detection and no fallback: not embedded
WHOLE = "whole_image"                # detect=False: the whole image is the face box by request

FIXED_PIXEL_THRESHOLD = 0.3   # the pixel check's fixed near-copy distance (set on 128 px demo faces)
CALIBRATION_FLOOR = 0.05      # a calibrated pixel threshold never falls below (noise copies: < 0.03)
CALIBRATION_SAMPLE = 512      # training faces measured for the calibration (all, in a smaller set)


@runtime_checkable
class IdentityEmbedder(Protocol):
    """Any identity model: `embed(uint8 [N, H, W, 3]) -> (float32 [N, dim], bool [N])`.

    `threshold` is the distance (Euclidean, in embedding space) below which two
    images count as the same identity; `name` labels reports.
    """
    name: str
    dim: int
    threshold: float

    def embed(self, images) -> Tuple[np.ndarray, np.ndarray]:
        ...


class EmbedResult(NamedTuple):
    """Embeddings float32 [N, D], ok bool [N], and one status string per image."""
    embeddings: np.ndarray
    ok: np.ndarray
    status: List[str]


def _as_images(images) -> List[np.ndarray]:
    """uint8 [N, H, W, 3] array or a sequence of uint8 [H, W, 3] -> list of arrays."""
    if not isinstance(images, (list, tuple)):  # numpy / JAX array
        arr = np.asarray(images)
        if arr.ndim != 4:
            raise ValueError(f"images must be [N, H, W, 3], got shape {arr.shape}")
        images = list(arr)
    out = []
    for i, im in enumerate(images):
        im = np.asarray(im)
        if im.dtype != np.uint8:
            raise ValueError(f"image {i}: dtype must be uint8 (0..255), got {im.dtype}")
        if im.ndim != 3 or im.shape[-1] != 3 or min(im.shape[:2]) < 1:
            raise ValueError(f"image {i}: shape must be [H, W, 3], got {im.shape}")
        out.append(np.ascontiguousarray(im))
    return out


def embed_with_status(embedder, images) -> EmbedResult:
    """`embedder.embed_detailed(images)` if it has one, else `embed` with generic statuses."""
    if hasattr(embedder, "embed_detailed"):
        return embedder.embed_detailed(images)
    emb, ok = embedder.embed(images)
    ok = np.asarray(ok, bool)
    return EmbedResult(np.asarray(emb, np.float32), ok,
                       ["embedded" if k else "not_embedded" for k in ok])


# --------------------------------------------------------------------------- dlib

def dlib_model_dir() -> str:
    """Folder of the dlib model files shipped by the `face-recognition-models` package.

    Found without importing that package (its __init__ needs pkg_resources,
    which recent setuptools no longer has).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the dlib model files come from the 'face-recognition-models' "
                          "package: pip install face-recognition-models (see requirements.txt)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "models")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no dlib model folder at {path}")
    return path


_MODELS: dict = {}
_MODELS_LOCK = threading.Lock()


def _dlib_model(kind: str, model_dir: Optional[str]):
    """Load (once per process) a dlib model: 'hog', 'cnn', 'sp5', 'sp68' or 'resnet'."""
    import dlib  # the dlib-bin package; imported lazily so the module imports without it

    model_dir = model_dir or dlib_model_dir()
    key = (kind, model_dir)
    with _MODELS_LOCK:
        if key not in _MODELS:
            files = {"cnn": "mmod_human_face_detector.dat",
                     "sp5": "shape_predictor_5_face_landmarks.dat",
                     "sp68": "shape_predictor_68_face_landmarks.dat",
                     "resnet": "dlib_face_recognition_resnet_model_v1.dat"}
            if kind == "hog":
                _MODELS[key] = dlib.get_frontal_face_detector()
            else:
                path = os.path.join(model_dir, files[kind])
                if not os.path.isfile(path):
                    raise FileNotFoundError(f"dlib model file missing: {path}")
                ctor = {"cnn": dlib.cnn_face_detection_model_v1,
                        "sp5": dlib.shape_predictor, "sp68": dlib.shape_predictor,
                        "resnet": dlib.face_recognition_model_v1}[kind]
                _MODELS[key] = ctor(path)
        return _MODELS[key]


class DlibEmbedder:
    """dlib's 128-d ResNet face descriptor; same person iff distance < 0.6.

    Per image: if its short side is below `min_size` px it is upscaled
    (bicubic) to `min_size` first (dlib's HOG detector misses faces under ~80
    px); the face is found with the `detector` ('hog', dlib's frontal HOG +
    SVM, fast; or 'cnn', dlib's MMOD CNN, slower on CPU), `upsample` times
    upsampled; of several faces the largest box is used. 5-point (or 68-point,
    `landmarks=68`) landmarks align a 150x150 chip, from which the network
    computes the descriptor (`jitters` > 0 averages that many jittered chips).

    Detection failures: with `detect_fallback="whole"` the whole image is used
    as the face box (right for already aligned face crops such as GAN output)
    and the status says "whole_image_fallback"; with `detect_fallback=None`
    the image gets ok=False, status "no_face_detected". `detect=False` skips
    detection and always uses the whole image (status "whole_image").

    Beware mixing: an image whose box came from the detector and a near-copy
    whose box came from the fallback are aligned differently and can be far
    apart; for crops of one layout, `detect=False` is the consistent choice.
    """

    name = "dlib_resnet_v1"
    dim = 128
    is_identity_model = True

    def __init__(self, detect: bool = True, upsample: int = 1, min_size: int = 80,
                 detect_fallback: Optional[str] = None, detector: str = "hog",
                 landmarks: int = 5, jitters: int = 0, threshold: float = 0.6,
                 model_dir: Optional[str] = None):
        if detect_fallback not in (None, "whole"):
            raise ValueError(f"detect_fallback must be None or 'whole', got {detect_fallback!r}")
        if detector not in ("hog", "cnn"):
            raise ValueError(f"detector must be 'hog' or 'cnn', got {detector!r}")
        if landmarks not in (5, 68):
            raise ValueError(f"landmarks must be 5 or 68, got {landmarks}")
        if upsample < 0 or min_size < 1 or jitters < 0:
            raise ValueError("upsample and jitters must be >= 0, min_size >= 1")
        self.detect, self.upsample, self.min_size = bool(detect), int(upsample), int(min_size)
        self.detect_fallback, self.detector = detect_fallback, detector
        self.landmarks, self.jitters, self.threshold = landmarks, int(jitters), float(threshold)
        self.model_dir = model_dir
        # Fail now, not at the first image, if dlib or the model files are missing.
        self._det = _dlib_model(detector, model_dir) if self.detect else None
        self._sp = _dlib_model("sp5" if landmarks == 5 else "sp68", model_dir)
        self._net = _dlib_model("resnet", model_dir)

    def __repr__(self):
        return (f"DlibEmbedder(detect={self.detect}, upsample={self.upsample}, "
                f"min_size={self.min_size}, detect_fallback={self.detect_fallback!r}, "
                f"detector={self.detector!r}, landmarks={self.landmarks}, "
                f"threshold={self.threshold})")

    def _prepare(self, im: np.ndarray) -> np.ndarray:
        h, w = im.shape[:2]
        if min(h, w) >= self.min_size:
            return im
        s = self.min_size / min(h, w)
        size = (max(int(round(w * s)), self.min_size), max(int(round(h * s)), self.min_size))
        return np.asarray(Image.fromarray(im).resize(size, Image.BICUBIC), np.uint8)

    def _box(self, im: np.ndarray):
        """(dlib.rectangle or None, status) for one prepared image."""
        import dlib
        whole = dlib.rectangle(0, 0, im.shape[1] - 1, im.shape[0] - 1)
        if not self.detect:
            return whole, WHOLE
        found = self._det(im, self.upsample)
        rects = [d.rect for d in found] if self.detector == "cnn" else list(found)
        if rects:
            best = max(rects, key=lambda r: (r.area(), -r.left(), -r.top()))
            if len(rects) == 1:
                return best, DETECTED
            return best, f"{DETECTED} ({len(rects)} faces, largest used)"
        if self.detect_fallback == "whole":
            return whole, WHOLE_IMAGE
        return None, NO_FACE

    def embed_detailed(self, images) -> EmbedResult:
        """Embeddings float32 [N, 128], ok bool [N], status per image (see class doc)."""
        ims = _as_images(images)
        emb = np.zeros((len(ims), self.dim), np.float32)
        ok = np.zeros(len(ims), bool)
        status = []
        for i, im in enumerate(ims):
            im = self._prepare(im)
            rect, st = self._box(im)
            if rect is not None:
                shape = self._sp(im, rect)
                emb[i] = np.asarray(self._net.compute_face_descriptor(im, shape, self.jitters),
                                    np.float32)
                ok[i] = np.all(np.isfinite(emb[i]))
                if not ok[i]:
                    emb[i] = 0
                    st = "descriptor_not_finite"
            status.append(st)
        return EmbedResult(emb, ok, status)

    def embed(self, images) -> Tuple[np.ndarray, np.ndarray]:
        """uint8 [N, H, W, 3] -> (float32 [N, 128], ok bool [N])."""
        r = self.embed_detailed(images)
        return r.embeddings, r.ok


# --------------------------------------------------------------------------- pixels

class PixelEmbedder:
    """NOT an identity model: downsampled, normalised pixels, in pure JAX.

    Each image is resized to `size` x `size` x 3 (`jax.image.resize`,
    linear with antialiasing), mean-centred and scaled to unit L2 norm, so the
    distance (0..2) ignores global brightness/contrast changes and pixel
    noise. It recognises *the same picture*, not the same person: a new photo
    of a training patient would pass it. Use only where a face model cannot run
    (tests, CPU demos on the drawn demo faces).

    The near-copy check (`IdentityCheck`) is shift-tolerant: it compares centre crops
    (`max_shift` px cut from each side) and takes the least distance over the candidate's
    crops moved by up to `max_shift` px each way (`near_copy_shifts`), so a copy moved by a
    pixel or two matches. The plain vectors do not: a 32 px demo face moved by 1 px is 0.25-0.36
    from its original in median (up to 0.48), a 128 px one moved 1 px down and 2 right 0.15-0.17.

    `threshold`: a number, or None (`make_embedder('pixel')`): `IdentityCheck` then calibrates
    it on its training faces (`calibrate_near_copy`, at the `percentile`th percentile). Why: the
    fixed 0.3 was set on the 128 px demo faces (near-copies < 0.17, different faces 0.67-1.46);
    on a low-variation 32 px set 72% of held-out real images lie within 0.3 of a training image,
    so a fixed 0.3 refuses what fresh real samples look like.
    """

    name = "pixel_not_identity"
    is_identity_model = False

    def __init__(self, size: int = 16, threshold: Optional[float] = FIXED_PIXEL_THRESHOLD,
                 max_shift: int = 2, percentile: float = 1.0):
        if size < 1 or max_shift < 0:
            raise ValueError(f"size must be >= 1 and max_shift >= 0, got {size}, {max_shift}")
        if not 0.0 <= percentile <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {percentile}")
        self.size, self.max_shift, self.percentile = int(size), int(max_shift), float(percentile)
        self.threshold = None if threshold is None else float(threshold)
        self.dim = self.size * self.size * 3

    def __repr__(self):
        return (f"PixelEmbedder(size={self.size}, threshold={self.threshold}, max_shift={self.max_shift}, "
                f"percentile={self.percentile})")

    def embed_detailed(self, images) -> EmbedResult:
        """float32 [N, size*size*3] unit vectors; ok=False only for flat (constant) images.

        Compiled once per image size and batch bucket (8, 16, 32 or 64 images; larger sets go
        64 at a time, the last batch padded): a few programs serve every batch of a run."""
        ims = _as_images(images)
        emb = np.zeros((len(ims), self.dim), np.float32)
        ok = np.zeros(len(ims), bool)
        for shape in dict.fromkeys(im.shape for im in ims):  # one resize per image size
            idx = [i for i, im in enumerate(ims) if im.shape == shape]
            for s in range(0, len(idx), 64):
                part = idx[s:s + 64]
                x = np.stack([ims[i] for i in part] + [ims[part[0]]] * (_bucket(len(part)) - len(part)))
                e, k = _pixel_features_jit(x.astype(np.float32), self.size)
                emb[part], ok[part] = np.asarray(e)[:len(part)], np.asarray(k)[:len(part)]
        return EmbedResult(emb, ok, ["pixels" if k else "flat_image" for k in ok])

    def embed(self, images) -> Tuple[np.ndarray, np.ndarray]:
        """uint8 [N, H, W, 3] -> (float32 [N, size*size*3], ok bool [N])."""
        r = self.embed_detailed(images)
        return r.embeddings, r.ok

    def _crops(self, ims: List[np.ndarray], dy: int, dx: int) -> List[np.ndarray]:
        """Each image's centre crop (margin max_shift; less for images under 4 * max_shift + 1
        px) moved by (dy, dx) px: the same-size windows the near-copy check compares."""
        out = []
        for im in ims:
            h, w = im.shape[:2]
            m = min(self.max_shift, (min(h, w) - 1) // 4)
            y, x = m + max(-m, min(m, dy)), m + max(-m, min(m, dx))
            out.append(im[y:h - 2 * m + y, x:w - 2 * m + x])
        return out

    def near_copy_embed(self, images) -> EmbedResult:
        """The reference side of the near-copy check: vectors of the centre crops."""
        return self.embed_detailed(self._crops(_as_images(images), 0, 0))

    def near_copy_shifts(self, images) -> Tuple[np.ndarray, np.ndarray]:
        """The candidate side: (float32 [S, N, size*size*3], the vectors of the crops moved by
        every (dy, dx) in [-max_shift, max_shift]^2, S = (2 max_shift + 1)^2; ok bool [N])."""
        ims = _as_images(images)
        steps = range(-self.max_shift, self.max_shift + 1)
        embs = [self.embed_detailed(self._crops(ims, dy, dx)) for dy in steps for dx in steps]
        return np.stack([e.embeddings for e in embs]), embs[0].ok


def calibrate_near_copy(embedder: PixelEmbedder, images, ref_emb: np.ndarray, percentile: float = 1.0,
                        sample: int = CALIBRATION_SAMPLE, seed: int = 0) -> dict:
    """The near-copy threshold of a training set: what fresh real images look like to the check.

    A random sample of up to `sample` training faces (all of them in a smaller set), each
    one's shift-tolerant distance to its nearest *other* training face: how far a real face
    the generator never saw lies from the training set. Candidates closer than the
    `percentile`th percentile of those distances are refused; kept within [CALIBRATION_FLOOR
    (noise-level copies are always refused), FIXED_PIXEL_THRESHOLD (never stricter than the
    fixed near-copy check)]. images uint8 [M, H, W, 3], ref_emb [M, D] their near_copy_embed
    vectors. Returns the record: method, percentile, threshold, the measured percentile, floor,
    cap, sample (n held out), references, max_shift, seed, distance quantiles and the share
    within the fixed threshold.
    """
    ims, ref = _as_images(images), np.asarray(ref_emb, np.float32)
    base = dict(percentile=float(percentile), floor=CALIBRATION_FLOOR, cap=FIXED_PIXEL_THRESHOLD,
                references=len(ims), max_shift=embedder.max_shift, seed=int(seed))
    if len(ims) < 2:   # no other training face to compare with
        return dict(base, method="fixed (fewer than 2 training faces to calibrate on)",
                    threshold=FIXED_PIXEL_THRESHOLD, sample=0)
    pick = np.sort(np.random.default_rng(seed).permutation(len(ims))[:min(sample, len(ims))])
    d = np.concatenate([_nearest_other(embedder, [ims[i] for i in pick[s:s + 64]], ref, pick[s:s + 64])
                        for s in range(0, len(pick), 64)])
    measured = float(np.percentile(d, percentile))
    q = np.percentile(d, [1, 5, 25, 50])
    return dict(base, method="calibrated", threshold=float(np.clip(measured, CALIBRATION_FLOOR,
                                                                   FIXED_PIXEL_THRESHOLD)),
                measured=measured, sample=int(len(pick)),
                quantiles=dict(min=float(d.min()), p1=float(q[0]), p5=float(q[1]), p25=float(q[2]),
                               p50=float(q[3])),
                share_within_fixed=float(np.mean(d <= FIXED_PIXEL_THRESHOLD)))


def _nearest_other(embedder: PixelEmbedder, ims: List[np.ndarray], ref: np.ndarray,
                   own: np.ndarray) -> np.ndarray:
    """Shift-tolerant distance [n] of each image (n <= 64) to its nearest reference other than
    itself (row own[i] of ref [M, D])."""
    n = len(ims)
    shifted, _ = embedder.near_copy_shifts(ims + ims[:1] * (64 - n))  # [S, 64, D]: one compiled shape
    d2 = np.array(_least_sq_distance(jnp.asarray(shifted), jnp.asarray(ref)))[:n]   # [n, M]
    d2[np.arange(n), own] = np.inf
    return np.sqrt(np.maximum(d2.min(1), 0.0))


@jax.jit
def _least_sq_distance(q, r):
    """[n, M] least over the shifts of |q_s,i - r_j|^2 for q [S, n, D], r [M, D] (one [n, M] at a time)."""
    r2 = jnp.sum(r * r, axis=1)[None, :]

    def step(best, qs):
        d2 = jnp.sum(qs * qs, axis=1)[:, None] + r2 - 2.0 * jnp.matmul(qs, r.T, precision=jax.lax.Precision.HIGHEST)
        return jnp.minimum(best, d2), None
    return jax.lax.scan(step, jnp.full((q.shape[1], r.shape[0]), jnp.inf, jnp.float32), q)[0]


def pixel_features(images, size: int = 16, scale: float = 1.0 / 255.0):
    """PixelEmbedder's vectors in pure JAX (jit-able, used inside evolve's fitness).

    images float [N, H, W, C], C = 1 (replicated to 3) or 3; `scale` maps them
    to a 0..1-wide range: 1/255 for pixel values, 0.5 for generator output in
    [-1, 1] (the offset is removed with the mean, so both give the same vectors).
    Returns (float32 [N, size*size*3] unit vectors, ok bool [N]); an image is
    not ok (zeros) when it is flat: centred norm <= 1e-3 after scaling.
    """
    x = jnp.asarray(images, jnp.float32) * scale
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    n = x.shape[0]
    small = jax.image.resize(x, (n, size, size, 3), "linear", antialias=True).reshape(n, -1)
    small = small - jnp.mean(small, axis=1, keepdims=True)
    norm = jnp.linalg.norm(small, axis=1, keepdims=True)
    ok = norm[:, 0] > 1e-3  # flat image: only rounding residue is left
    emb = jnp.where(ok[:, None], small / jnp.maximum(norm, 1e-12), 0.0)
    return emb, ok


_pixel_features_jit = jax.jit(pixel_features, static_argnums=1)


def _bucket(n: int) -> int:
    """The batch size n images are padded to: the next of 8, 16, 32, 64."""
    return next(b for b in (8, 16, 32, 64) if n <= b)


# --------------------------------------------------------------------------- search

@jax.jit
def _nearest_index(q, r, r2):
    """argmin_j |q_i - r_j|^2 [N] of q [N, D], r [M, D] with r2 = |r_j|^2 [M]; compiled once
    per shape (not per call)."""
    d2 = jnp.sum(q * q, axis=1)[:, None] + r2[None, :] - 2.0 * jnp.matmul(
        q, r.T, precision=jax.lax.Precision.HIGHEST)
    return jnp.argmin(d2, axis=1)


def nearest_identity(query_emb, reference_emb, chunk: int = 1024
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """Nearest reference for each query: (distance float32 [N], index int64 [N]).

    query_emb [N, D] and reference_emb [M, D] (numpy or JAX, M >= 1). The
    search runs in JAX on `chunk` queries at a time via |q|^2 + |r|^2 - 2 q.r;
    the returned distance is then recomputed exactly as |q - r[index]|, so
    near-zero distances (copies) are not lost to cancellation.
    """
    q = np.asarray(query_emb, np.float32)
    r = np.asarray(reference_emb, np.float32)
    if q.ndim != 2 or r.ndim != 2 or q.shape[1] != r.shape[1]:
        raise ValueError(f"embeddings must be [N, D] and [M, D], got {q.shape} and {r.shape}")
    if r.shape[0] == 0:
        raise ValueError("no reference embeddings to compare with")
    rj = jnp.asarray(r)
    r2 = jnp.sum(rj * rj, axis=1)
    index = np.zeros(q.shape[0], np.int64)
    for s in range(0, q.shape[0], chunk):
        qc = q[s:s + chunk]
        if qc.shape[0] < chunk and q.shape[0] > chunk:  # pad: one compiled shape
            qc = np.concatenate([qc, np.zeros((chunk - qc.shape[0], q.shape[1]), np.float32)])
        index[s:s + chunk] = np.asarray(_nearest_index(jnp.asarray(qc), rj, r2))[
            :min(chunk, q.shape[0] - s)]
    dist = np.linalg.norm(q - r[index], axis=1).astype(np.float32)
    return dist, index


def make_embedder(kind: str, threshold: float = -1.0, detect: bool = True, fallback: str = "whole",
                  percentile: float = 1.0):
    """The embedder named by a --identity flag or config field: 'dlib' (threshold 0.6, dlib's
    same-person distance, unless `threshold` >= 0), 'pixel' (NOT an identity model; unless
    `threshold` >= 0, calibrated on the training faces at `percentile` by the IdentityCheck) or
    'none' (None). fallback='whole': a face dlib's detector misses is embedded whole."""
    if kind == "none":
        return None
    if kind == "pixel":
        return PixelEmbedder(16, None if threshold < 0 else float(threshold), percentile=float(percentile))
    if kind == "dlib":
        return DlibEmbedder(detect=bool(detect), detect_fallback=fallback or None,
                            threshold=0.6 if threshold < 0 else float(threshold))
    raise ValueError(f"identity model {kind!r}: use 'dlib', 'pixel' or 'none'")


def _rgb_uint8(images):
    """uint8 [N, H, W, C] with C = 1 or 3 -> [N, H, W, 3] (grey replicated); sequences of
    [H, W, 3] images (sizes may differ) pass unchanged."""
    if isinstance(images, (list, tuple)):
        return images
    images = np.asarray(images)
    return np.repeat(images, 3, -1) if images.ndim == 4 and images.shape[-1] == 1 else images


class IdentityCheck:
    """An export's de-identification check: the training faces embedded once, then every batch
    of candidates -> nearest training face, distance and pass (farther than the threshold).

    references uint8 [M, H, W, C] (C = 1 or 3) with their `files` [M] (for the records).
    `require()` raises ValueError when no reference could be embedded (nothing to compare
    with); without references every candidate gets distance NaN and fails.

    A PixelEmbedder's check is its shift-tolerant near-copy distance (`near_copy_shifts`), and
    its threshold None is calibrated here on the references (`calibrate_near_copy`); the
    record is `calibration` (None: the threshold was given or is the model's own).
    """

    def __init__(self, embedder, references, files: Sequence[str]):
        self.embedder, self.files = embedder, list(files)
        self.name = getattr(embedder, "name", type(embedder).__name__)
        self.is_identity_model = bool(getattr(embedder, "is_identity_model", not self.name.startswith("pixel")))
        self.near_copy = hasattr(embedder, "near_copy_shifts")
        refs = _rgb_uint8(references)
        ref = embedder.near_copy_embed(refs) if self.near_copy else embed_with_status(embedder, refs)
        self.ref_index = np.flatnonzero(ref.ok)
        self.ref_emb = ref.embeddings[self.ref_index]
        self.ref_status = list(ref.status)
        self.not_embedded = [{"index": int(i), "reason": ref.status[i]} for i in np.flatnonzero(~ref.ok)]
        self.calibration = None
        if embedder.threshold is None:
            self.calibration = calibrate_near_copy(embedder, [refs[i] for i in self.ref_index], self.ref_emb,
                                                   embedder.percentile)
        self.threshold = float(self.calibration["threshold"] if self.calibration else embedder.threshold)

    def _nearest(self, images) -> Tuple[np.ndarray, np.ndarray, EmbedResult]:
        """(distance [n], reference row [n], candidate embedding) of the embeddable candidates:
        the least over the shifted crops for a near-copy check."""
        if not self.near_copy:
            cand = embed_with_status(self.embedder, images)
            if not cand.ok.any():
                return np.zeros(0, np.float32), np.zeros(0, np.int64), cand
            d, j = nearest_identity(cand.embeddings[cand.ok], self.ref_emb)
            return d, j, cand
        shifted, ok = self.embedder.near_copy_shifts(images)
        cand = EmbedResult(shifted[0], ok, ["pixels" if k else "flat_image" for k in ok])
        n = int(ok.sum())
        if not n:
            return np.zeros(0, np.float32), np.zeros(0, np.int64), cand
        d, j = nearest_identity(shifted[:, ok].reshape(-1, shifted.shape[-1]), self.ref_emb)
        best = np.argmin(d.reshape(-1, n), axis=0)
        return d.reshape(-1, n)[best, np.arange(n)], j.reshape(-1, n)[best, np.arange(n)], cand

    def require(self) -> "IdentityCheck":
        """self, or ValueError when none of the references could be embedded."""
        if self.ref_index.size == 0:
            raise ValueError(f"none of the {len(self.ref_status)} reference images could be embedded by "
                             f"{self.name} (statuses: {sorted(set(self.ref_status))})")
        return self

    def check(self, images) -> dict:
        """uint8 [N, H, W, C] -> dict distance float32 [N] (NaN: not embedded), index int64 [N]
        (into the references, -1: none), passed bool [N], status [N]."""
        images = _rgb_uint8(images)
        if not self.ref_index.size:
            cand = embed_with_status(self.embedder, images)
            d, j = np.zeros(0, np.float32), np.zeros(0, np.int64)
        else:
            d, j, cand = self._nearest(images)
        n = len(cand.ok)
        distance, index = np.full(n, np.nan, np.float32), np.full(n, -1, np.int64)
        ok_idx = np.flatnonzero(cand.ok)
        if ok_idx.size and self.ref_index.size:
            distance[ok_idx], index[ok_idx] = d, self.ref_index[j]
        passed = np.asarray(cand.ok) & (np.nan_to_num(distance, nan=-np.inf) > self.threshold)
        return dict(distance=distance, index=index, passed=passed, status=list(cand.status))

    def record(self, result: dict, i: int) -> dict:
        """Candidate i's metadata record: nearest real file and distance, threshold, model."""
        j, d = int(result["index"][i]), float(result["distance"][i])
        rec = dict(nearest_real_file=self.files[j] if j >= 0 else None,
                   nearest_real_distance=None if np.isnan(d) else d, threshold=self.threshold,
                   embedder=self.name, is_identity_model=self.is_identity_model,
                   passed=bool(result["passed"][i]), status=result["status"][i])
        return rec if self.calibration is None else dict(rec, calibration=self.calibration_summary())

    def calibration_summary(self) -> Optional[dict]:
        """The calibration in a metadata row: method, percentile, threshold, n measured (held out
        of the nearest-other search), the distance quantiles (None: not calibrated)."""
        c = self.calibration
        if c is None:
            return None
        return {k: c[k] for k in ("method", "percentile", "threshold", "sample", "max_shift", "quantiles",
                                  "share_within_fixed") if k in c}


def deidentification_report(candidates, references, embedder) -> dict:
    """Does any candidate (synthetic) image look like a reference (training) person?

    candidates, references: uint8 [N, H, W, 3] / [M, H, W, 3] (or sequences of
    [H, W, 3]). Returns a dict:
      embedder, threshold      the model used and its same-person distance
      distance   float32 [N]   distance to the nearest embeddable reference
                               (NaN where the candidate could not be embedded)
      index      int64 [N]     that reference's index into `references` (-1: none)
      passed     bool [N]      distance > threshold; False for non-embedded images
      status     list [N]      the embedder's per-candidate status
      not_embedded             [{"index": i, "reason": status}] of candidates
      references_not_embedded  the same for references (left out of the search)
      num_passed, num_rejected, num_not_embedded, all_passed
    Raises ValueError if no reference can be embedded (nothing to compare with).
    """
    refs = _as_images(references)
    chk = IdentityCheck(embedder, refs, [str(i) for i in range(len(refs))]).require()
    r = chk.check(_as_images(candidates))
    passed, n = r["passed"], len(r["passed"])
    not_emb = [{"index": int(i), "reason": r["status"][i]} for i in range(n) if np.isnan(r["distance"][i])]
    return {
        "embedder": chk.name,
        "threshold": chk.threshold,
        "distance": r["distance"],
        "index": r["index"],
        "passed": passed,
        "status": r["status"],
        "not_embedded": not_emb,
        "references_not_embedded": chk.not_embedded,
        "num_passed": int(passed.sum()),
        "num_rejected": int(n - passed.sum() - len(not_emb)),
        "num_not_embedded": len(not_emb),
        "all_passed": bool(passed.all()) if n else True,
    }
