"""xgb's --out: a folder of the user's files is refused before any image is read."""
import numpy as np
import pytest

from jaxgen.errors import OutputError
from jaxgen.commands import xgb as xgb_command
from jaxgen.features import xgb


def test_out_is_checked_before_the_data(tmp_path):
    user = tmp_path / "report"
    user.mkdir()
    (user / "report.md").write_text("my report")
    with pytest.raises(OutputError, match=f"--out {user} is not empty"):   # the folders do not exist
        xgb_command.main(["--train", str(tmp_path / "nope"), "--test", str(tmp_path / "nope"), "--out", str(user)])
    assert [p.name for p in user.iterdir()] == ["report.md"]


def test_feature_progress_counts_chunks(log_lines):
    imgs = np.random.default_rng(0).integers(0, 256, (5, 16, 16), dtype=np.uint8)
    f = xgb.extract_with_progress(imgs, ("hist",), {}, "train images", chunk=2, every=0.0)
    np.testing.assert_array_equal(f, xgb.extract_features(imgs, ("hist",)))
    lines = log_lines.read().splitlines()
    assert [ln.split(": ")[2].split()[0] for ln in lines] == ["2/5", "4/5", "5/5"]
