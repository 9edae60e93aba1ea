"""dlib's ResNet face descriptor as an identity embedder (D=128, same person iff distance < 0.6).

The face is found with dlib's HOG frontal detector (or its CNN detector), 5-point landmarks
align a 150x150 chip, the network computes the descriptor. Needs the `dlib-bin` and
`face-recognition-models` packages; the model files ship in the latter, nothing is
downloaded. dlib is imported lazily, so this module imports without it.
"""
from __future__ import annotations

import importlib.util
import os
import threading
from typing import Optional, Tuple

import numpy as np
from PIL import Image

from jaxgen.identity.embedder_interface import EmbedResult, as_images

__all__ = ["DlibEmbedder", "dlib_model_dir"]

# Per-image status strings (EmbedResult.status).
DETECTED = "detected"                # a face detector found the face
WHOLE_IMAGE = "whole_image_fallback"  # no detection; the whole image was the face box
NO_FACE = "no_face_detected"         # no detection and no fallback: not embedded
WHOLE = "whole_image"                # detect=False: the whole image is the face box by request


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
        ims = as_images(images)
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
