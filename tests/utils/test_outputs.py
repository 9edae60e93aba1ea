"""Output folders: created and marked when new or empty, resumed when their own, else refused."""
import json

import pytest

from jaxgen.errors import OutputError, UserError
from jaxgen.utils.outputs import MARKER, beside, check_output, claim_output, has_files, read_marker


def _snapshot(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


def test_new_and_empty_folders_are_claimed_with_a_marker(tmp_path):
    new = tmp_path / "a" / "b"
    assert check_output(new, "generate") == new and not new.exists()   # check creates nothing
    assert claim_output(new, "generate") == new
    marker = json.loads((new / MARKER).read_text())
    assert marker["kind"] == "generate" and marker["created"] and "command" in marker
    empty = tmp_path / "empty"
    empty.mkdir()
    claim_output(empty, "evolve")
    assert read_marker(empty)["kind"] == "evolve"
    (new / "x.png").write_bytes(b"mine")                # the command's own files: resumed
    before = _snapshot(new)
    assert claim_output(new, "generate") == new and _snapshot(new) == before


def test_user_folder_is_refused_in_one_line_and_left_untouched(tmp_path):
    user = tmp_path / "thesis"
    (user / "healthy").mkdir(parents=True)
    for name, data in (("thesis.txt", b"chapter 1"), ("metadata.jsonl", b"{}\n"),
                       ("healthy/keep.png", b"\x89PNG"), ("zz.txt", b"z")):
        (user / name).write_bytes(data)
    before = _snapshot(user)
    with pytest.raises(OutputError) as e:
        claim_output(user, "evolve", flag="--out")
    msg = str(e.value)
    assert "\n" not in msg and str(user) in msg and "--out" in msg
    assert "healthy/, metadata.jsonl, thesis.txt and 1 more" in msg   # the first 3 entries
    assert isinstance(e.value, UserError) and isinstance(e.value, FileExistsError)
    assert _snapshot(user) == before


def test_other_kinds_files_and_legacy_folders(tmp_path):
    ev = claim_output(tmp_path / "ev", "evolve")
    with pytest.raises(OutputError, match=r"another jaxgen command \('evolve', not 'generate'\).*--out_dir"):
        check_output(ev, "generate", flag="--out_dir")
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        check_output(f, "generate")
    old = tmp_path / "old_pipeline"                     # written before markers existed
    old.mkdir()
    (old / ".base.done").write_text("{}")
    with pytest.raises(OutputError):
        check_output(old, "pipeline")
    assert claim_output(old, "pipeline", legacy=has_files(".base.done")) == old
    assert read_marker(old)["kind"] == "pipeline"       # adopted: marked from now on
    assert claim_output(old, "pipeline") == old


def test_default_outputs_lie_beside_the_model(tmp_path):
    run = tmp_path / "runs" / "acne_tiny"
    run.mkdir(parents=True)
    pkl = tmp_path / "ffhq.pkl"
    pkl.write_bytes(b"")
    assert beside(run, "eval") == tmp_path / "runs" / "acne_tiny_eval"
    assert beside(str(run) + "/", "eval") == tmp_path / "runs" / "acne_tiny_eval"
    assert beside(pkl, "eval") == tmp_path / "ffhq_eval"
