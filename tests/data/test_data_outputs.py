"""Demo renderers: their commands take underscore flags (the dashed ones still work); no user folder is
overwritten."""
import json

import pytest

from jaxgen.commands import demo_faces as demo_faces_command
from jaxgen.commands import depth_faces as depth_faces_command
from jaxgen.data import demo_faces, depth_faces, load_dataset
from jaxgen.errors import OutputError


def test_demo_faces_cli_takes_underscore_flags_and_the_old_spellings(tmp_path, capsys):
    out = tmp_path / "demo"
    assert demo_faces_command.main(["--out", str(out), "--num_per_class", "2", "--resolution", "16",
                            "--classes", "healthy,severe", "--no_preview", "--quiet"]) == 0
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["num_per_class"] == 2 and meta["counts"] == {"healthy": 2, "severe": 2}
    assert not (out / "preview.png").exists()
    old = tmp_path / "old"
    assert demo_faces_command.main(["--out", str(old), "--num-per-class", "1", "--resolution", "16",
                            "--classes", "mild", "--no-preview", "--quiet"]) == 0
    assert json.loads((old / "dataset.json").read_text())["num_per_class"] == 1
    assert not (old / "preview.png").exists()
    with pytest.raises(SystemExit):
        demo_faces_command.main(["--help"])
    shown = capsys.readouterr().out
    assert "--num_per_class" in shown and "--num-per-class" not in shown and "--no-preview" not in shown


def test_depth_faces_cli_underscore_flags(tmp_path):
    out = tmp_path / "depth"
    assert depth_faces_command.main(["--out", str(out), "--num_per_class", "1", "--resolution", "16",
                             "--no_preview", "--quiet"]) == 0
    assert json.loads((out / "dataset.json").read_text())["num_per_class"] == 1
    assert not (out / "preview.png").exists()


def test_renderers_refuse_a_folder_of_the_users_files(tmp_path):
    user = tmp_path / "photos"
    user.mkdir()
    (user / "me.jpg").write_bytes(b"my photo")
    for write in (lambda: demo_faces.write_demo_dataset(user, 1, 16, progress=False),
                  lambda: depth_faces.write_depth_dataset(user, 1, 16, progress=False),
                  lambda: demo_faces.write_demo_dataset(user, 1, 16, progress=False, overwrite=True)):
        with pytest.raises(OutputError, match=f"--out {user} is not empty"):
            write()
    assert [p.name for p in user.iterdir()] == ["me.jpg"]


def test_a_demo_source_in_a_user_folder_names_the_config_flag(tmp_path):
    """data.source='demo' renders into data.path: the refusal names --config.data.path."""
    user = tmp_path / "photos"
    user.mkdir()
    (user / "me.jpg").write_bytes(b"my photo")
    for source in ("demo", "depth_demo"):
        with pytest.raises(OutputError, match=f"^--config.data.path {user} is not empty"):
            load_dataset(dict(source=source, path=str(user), resolution=16, num_per_class=1,
                              progress=False))
    assert [p.name for p in user.iterdir()] == ["me.jpg"]
