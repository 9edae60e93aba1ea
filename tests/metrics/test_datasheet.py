"""jaxgen.metrics.datasheet: a copying generator's datasheet gives it away. Bad folders are
refused in tests/workflows/test_datasheet.py; the folder command's files (random-Inception
features) are checked where the pipeline writes them (tests/workflows/test_pipeline.py)."""
import shutil

import numpy as np
import pytest

from jaxgen.data.demo_faces import write_demo_dataset
from jaxgen.data.folder import load_image_folder
from jaxgen.identity.search import IdentityCheck
from jaxgen.identity.pixel_embedder import PixelEmbedder
from jaxgen.metrics import datasheet as DS
from jaxgen.metrics.suite import FeatureNet

XLA_FAST_COMPILE = True
CLASSES = ("healthy", "severe")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("sheet")
    write_demo_dataset(root / "train", 12, 16, 0, classes=CLASSES, progress=False)
    write_demo_dataset(root / "holdout", 12, 16, 1, classes=CLASSES, progress=False)
    write_demo_dataset(root / "fresh", 12, 16, 2, classes=CLASSES, progress=False)
    copies = root / "copies"                           # a "generator" that returns its training images
    shutil.copytree(root / "train", copies)
    (copies / "dataset.json").unlink()
    return root


def _pixels():
    return FeatureNet("pixels", False, lambda x: {"pool3": x.reshape(len(x), -1).astype(np.float32) / 255})


def _load(path):
    return load_image_folder(path, 16, 3, cache_dir=None)


def test_copies_are_given_away_and_fresh_faces_are_not(folders):
    train, hold = _load(folders / "train"), _load(folders / "holdout")
    check = IdentityCheck(PixelEmbedder(16, 0.3), train.images, train.paths)
    bad = DS.compute(_load(folders / "copies"), train, hold, _pixels(), check)
    good = DS.compute(_load(folders / "fresh"), train, hold, _pixels(), check)
    assert bad["privacy"]["synthetic"]["authenticity"] == 0.0
    assert bad["privacy"]["dcr"]["ratio"] == 0.0 and bad["privacy"]["membership_auc"] == 1.0
    assert bad["identity"]["match_share"] == 1.0 and bad["identity"]["matches"] == 24
    assert np.all(bad["_per_image"]["feature_distance"] == 0.0)
    assert good["identity"]["matches"] == 0 and good["privacy"]["synthetic"]["authenticity"] > 0.5
    assert 0.7 < good["privacy"]["dcr"]["ratio"] < 1.4 and 0.3 < good["privacy"]["membership_auc"] < 0.7
    assert bad["counts"]["synthetic"] == {"healthy": 12, "severe": 12}
    assert bad["fidelity"]["overall"]["fid"] == pytest.approx(0.0, abs=1e-3)   # rank-deficient: round-off
    assert good["fidelity"]["per_class"]["severe"]["fid"] > 1.0
    assert "not an identity model" in bad["identity"]["caveat"]
    assert "density" in bad["diversity"]["synthetic"] and "density" not in bad["privacy"]["synthetic"]
