"""jaxgen.metrics.datasheet: a copying generator's datasheet gives it away; bad folders are
refused before anything is written. The folder command's files (random-Inception features)
are checked where the pipeline writes them (tests/workflows/test_pipeline.py)."""
import shutil

import numpy as np
import pytest

from jaxgen.data.demo_faces import write_demo_dataset
from jaxgen.data.folder import load_image_folder
from jaxgen.errors import ConfigError
from jaxgen.evolve.identity import PixelEmbedder
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
    emb = PixelEmbedder(16, 0.3)
    bad = DS.compute(_load(folders / "copies"), train, hold, _pixels(), emb)
    good = DS.compute(_load(folders / "fresh"), train, hold, _pixels(), emb)
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


def test_bad_folders_are_refused_before_the_output_exists(folders, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="--holdout .*: not a folder"):
        DS.datasheet_for_folders(str(folders / "copies"), str(folders / "train"), str(tmp_path / "nope"), str(out))
    write_demo_dataset(tmp_path / "other", 2, 16, 0, classes=("healthy", "mild"), progress=False)
    with pytest.raises(ConfigError, match=r"--synthetic .* has classes \['healthy', 'mild'\]"):
        DS.datasheet_for_folders(str(tmp_path / "other"), str(folders / "train"), str(folders / "holdout"), str(out))
    with pytest.raises(ConfigError, match="--identity='face'"):
        DS.datasheet_for_folders(str(folders / "fresh"), str(folders / "train"), str(folders / "holdout"),
                                 str(out), feature_net="random_inception", identity_model="face")
    assert not out.exists()
