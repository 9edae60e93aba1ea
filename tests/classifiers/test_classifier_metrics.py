"""Classification metrics vs scikit-learn, and the report / comparison files."""
import json
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from jaxgen.classifiers.metrics import (classification_metrics, confusion_matrix, roc_auc_ovr,
                                        top_k_accuracy)
from jaxgen.classifiers.report import (compare_reports, plot_curves, render_markdown,
                                       write_comparison, write_report)

sk = pytest.importorskip("sklearn.metrics")

REPO = pathlib.Path(__file__).resolve().parents[2]


def _sk_prf(y, p, k, average):
    """scikit-learn with its default zero_division="warn" (value 0.0), warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sk.precision_recall_fscore_support(y, p, labels=list(range(k)), average=average)


def _cases():
    """(name, y_true, y_pred, K): random, absent classes, perfect, constant."""
    rng = np.random.default_rng(1234)
    out = []
    for k in (2, 3, 5, 10):
        n = 40 * k
        y = rng.integers(0, k, n)
        p = np.where(rng.random(n) < 0.5, y, rng.integers(0, k, n))
        out.append((f"random-K{k}", y, p, k))
        out.append((f"perfect-K{k}", y, y.copy(), k))
        out.append((f"constant-K{k}", y, np.full(n, k - 1), k))
    # Class 1 never predicted (precision 0/0), class 3 absent from truth (recall 0/0),
    # class 4 absent from both (F1 0/0), class 0 absent from predictions only.
    y = rng.integers(0, 3, 200)
    p = rng.choice([2, 3], 200)
    out.append(("absent-classes-K5", y, p, 5))
    y = rng.integers(0, 7, 300)
    y[y == 5] = 6
    p = np.where(rng.random(300) < 0.6, y, rng.integers(0, 7, 300))
    p[p == 2] = 0
    out.append(("absent-K7", y, p, 7))
    out.append(("single-sample", np.array([2]), np.array([0]), 4))
    return out


CASES = _cases()


@pytest.mark.parametrize("name,y,p,k", CASES, ids=[c[0] for c in CASES])
def test_confusion_matrix_and_prf_match_sklearn(name, y, p, k):
    cm = confusion_matrix(y, p, k)
    assert cm.dtype == np.int64 and cm.shape == (k, k)
    np.testing.assert_array_equal(cm, sk.confusion_matrix(y, p, labels=list(range(k))))

    with warnings.catch_warnings():
        warnings.simplefilter("error")          # ours must not warn on zero division
        m = classification_metrics(y, p, k)
    assert m["num_classes"] == k and m["num_samples"] == len(y)
    assert m["class_names"] == [str(i) for i in range(k)]
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, p), abs=1e-12)
    assert m["confusion_matrix"] == cm.tolist()

    P, R, F, S = _sk_prf(y, p, k, None)
    got = {key: np.array([row[key] for row in m["per_class"]]) for key in ("precision", "recall", "f1")}
    np.testing.assert_allclose(got["precision"], P, atol=1e-12)
    np.testing.assert_allclose(got["recall"], R, atol=1e-12)
    np.testing.assert_allclose(got["f1"], F, atol=1e-12)
    assert [row["support"] for row in m["per_class"]] == S.tolist()
    assert [row["index"] for row in m["per_class"]] == list(range(k))
    for avg in ("macro", "weighted"):
        P, R, F, _ = _sk_prf(y, p, k, avg)
        assert m[avg]["precision"] == pytest.approx(P, abs=1e-12), avg
        assert m[avg]["recall"] == pytest.approx(R, abs=1e-12), avg
        assert m[avg]["f1"] == pytest.approx(F, abs=1e-12), avg
        assert m[avg]["support"] == len(y)
    # Plain JSON types throughout.
    assert json.loads(json.dumps(m, allow_nan=False)) == m


def test_zero_division_values_explicitly():
    # K=4: class 0 perfect; class 1 never predicted; class 2 only predicted (absent
    # from truth); class 3 absent everywhere.
    y = np.array([0, 0, 1, 1])
    p = np.array([0, 0, 2, 2])
    m = classification_metrics(y, p, 4, ["a", "b", "c", "d"])
    rows = {r["class"]: r for r in m["per_class"]}
    assert rows["a"] == dict({"class": "a", "index": 0}, precision=1.0, recall=1.0, f1=1.0, support=2)
    assert (rows["b"]["precision"], rows["b"]["recall"], rows["b"]["f1"]) == (0.0, 0.0, 0.0)
    assert (rows["c"]["precision"], rows["c"]["recall"], rows["c"]["f1"]) == (0.0, 0.0, 0.0)
    assert (rows["d"]["precision"], rows["d"]["recall"], rows["d"]["f1"], rows["d"]["support"]) == (0, 0, 0, 0)
    assert m["accuracy"] == 0.5
    assert m["macro"]["precision"] == 0.25 and m["macro"]["f1"] == 0.25
    assert m["weighted"]["recall"] == 0.5 and m["weighted"]["precision"] == 0.5


def test_perfect_and_constant_classifiers():
    y = np.array([0, 1, 2, 2, 1, 0, 2])
    m = classification_metrics(y, y, 3)
    assert m["accuracy"] == 1.0
    for avg in ("macro", "weighted"):
        assert m[avg] == dict(precision=1.0, recall=1.0, f1=1.0, support=7)
    np.testing.assert_array_equal(m["confusion_matrix"], np.diag([2, 2, 3]))

    m = classification_metrics(y, np.full(7, 2), 3)
    assert m["accuracy"] == pytest.approx(3 / 7)
    r2 = m["per_class"][2]
    assert r2["precision"] == pytest.approx(3 / 7) and r2["recall"] == 1.0
    assert r2["f1"] == pytest.approx(2 * 3 / (2 * 3 + 4))
    assert m["macro"]["f1"] == pytest.approx(r2["f1"] / 3)
    assert m["confusion_matrix"] == [[0, 0, 2], [0, 0, 2], [0, 0, 3]]


def test_input_validation():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, -1], [0, 1], 3)
    with pytest.raises(ValueError, match="length"):
        confusion_matrix([0, 1], [0], 3)
    with pytest.raises(ValueError, match="integer"):
        confusion_matrix([0.5, 1], [0, 1], 3)
    with pytest.raises(ValueError, match="1-D"):
        confusion_matrix([[0, 1]], [[0, 1]], 3)
    with pytest.raises(ValueError, match="empty"):
        classification_metrics([], [], 3)
    with pytest.raises(ValueError, match="class names"):
        classification_metrics([0], [0], 2, ["only-one"])
    with pytest.raises(ValueError, match="unique"):
        classification_metrics([0], [0], 2, ["a", "a"])
    with pytest.raises(ValueError, match="positive integer"):
        confusion_matrix([0], [0], 0)
    # Integral floats and jax-style int32 arrays are accepted.
    np.testing.assert_array_equal(confusion_matrix(np.array([0.0, 1.0]), np.array([1, 1], np.int32), 2),
                                  [[0, 1], [0, 1]])


@pytest.mark.filterwarnings("ignore::UserWarning")    # sklearn: k >= n_classes is trivial
@pytest.mark.parametrize("k", [3, 5, 10])
def test_top_k_accuracy_matches_sklearn(k):
    rng = np.random.default_rng(k)
    n = 60 * k
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.0
    ties = np.round(logits)                       # many ties, tie rule must match too
    for scores in (logits, ties):
        for kk in range(1, k + 1):
            ref = sk.top_k_accuracy_score(y, scores, k=kk, labels=list(range(k)))
            assert top_k_accuracy(y, scores, kk) == pytest.approx(ref, abs=1e-12), (kk, scores is ties)
    assert top_k_accuracy(y, logits, 1) == pytest.approx(np.mean(logits.argmax(1) == y))
    assert top_k_accuracy(y, logits, k + 3) == 1.0
    with pytest.raises(ValueError):
        top_k_accuracy(y, logits, 0)
    with pytest.raises(ValueError):
        top_k_accuracy(y[:-1], logits, 1)


@pytest.mark.parametrize("k", [2, 3, 6])
def test_roc_auc_ovr_matches_sklearn(k):
    rng = np.random.default_rng(100 + k)
    n = 80 * k
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 0.8
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    if k == 2:
        ref = sk.roc_auc_score(y, probs[:, 1])
    else:
        ref = sk.roc_auc_score(y, probs, multi_class="ovr", average="macro", labels=list(range(k)))
    assert roc_auc_ovr(y, probs) == pytest.approx(ref, abs=1e-12)
    # Only the ranks within each column matter: a monotone map of the scores changes nothing.
    assert roc_auc_ovr(y, np.log(probs) * 3.0 + 7.0) == pytest.approx(ref, abs=1e-12)
    # Per class with heavy ties (average ranks) vs binary sklearn AUC.
    coarse = np.round(logits * 2) / 2
    per = roc_auc_ovr(y, coarse, average=None)
    ref_per = [sk.roc_auc_score(y == c, coarse[:, c]) for c in range(k)]
    np.testing.assert_allclose(per, ref_per, atol=1e-12)
    # Perfect and constant scores.
    assert roc_auc_ovr(y, np.eye(k)[y]) == 1.0
    assert roc_auc_ovr(y, np.ones((n, k))) == 0.5


def test_roc_auc_with_absent_class_and_metrics_with_scores():
    rng = np.random.default_rng(7)
    k, n = 4, 200
    y = rng.integers(0, 3, n)                     # class 3 never occurs
    s = rng.normal(size=(n, k))
    s[np.arange(n), y] += 1.0
    per = roc_auc_ovr(y, s, average=None)
    assert np.isnan(per[3])
    ref = [sk.roc_auc_score(y == c, s[:, c]) for c in range(3)]
    np.testing.assert_allclose(per[:3], ref, atol=1e-12)
    assert roc_auc_ovr(y, s) == pytest.approx(np.mean(ref), abs=1e-12)

    m = classification_metrics(y, s.argmax(1), k, scores=s, top_k=(1, 2, 4))
    assert set(m["top_k_accuracy"]) == {"1", "2"}            # k >= K skipped
    assert m["top_k_accuracy"]["2"] == pytest.approx(
        sk.top_k_accuracy_score(y, s, k=2, labels=list(range(k))), abs=1e-12)
    assert m["top_k_accuracy"]["1"] == pytest.approx(m["accuracy"], abs=1e-12)
    assert m["roc_auc_ovr_macro"] == pytest.approx(np.mean(ref), abs=1e-12)
    assert m["per_class"][3]["roc_auc"] is None
    assert [r["roc_auc"] for r in m["per_class"][:3]] == pytest.approx(ref, abs=1e-12)
    json.dumps(m, allow_nan=False)


# ----------------------------------------------------------------------- reports

NAMES = ["acne", "rosacea", "eczema", "healthy | skin"]


def _metrics(seed=0, acc=0.7, scores=False):
    rng = np.random.default_rng(seed)
    n = 240
    y = rng.integers(0, 4, n)
    p = np.where(rng.random(n) < acc, y, rng.integers(0, 4, n))
    kw = {}
    if scores:
        s = rng.normal(size=(n, 4))
        s[np.arange(n), y] += 1.5
        kw = dict(scores=s)
    return classification_metrics(y, p, 4, NAMES, **kw)


def _history(epochs=8):
    return [dict(epoch=e, train_loss=1.0 / e, val_loss=1.1 / e + 0.03 * e, train_acc=1 - 0.5 / e,
                 val_acc=0.75 - 0.4 / e - 0.01 * e, seconds=1.5) for e in range(1, epochs + 1)]


def _png(path, min_side=300):
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        w, h = im.size
        assert min_side <= w <= 4000 and min_side <= h <= 4000, im.size
        a = np.asarray(im.convert("L"))
        assert a.std() > 10            # not blank
    return w, h


def test_write_report_files_and_numbers(tmp_path):
    m = _metrics(scores=True)
    hist = _history()
    paths = write_report(tmp_path / "rep", m, NAMES, "ResNet50V2: synthetic -> real", history=hist)
    assert set(paths) == {"json", "md", "confusion_matrix", "curves"}
    for key, fname in (("json", "report.json"), ("md", "report.md"),
                       ("confusion_matrix", "confusion_matrix.png"), ("curves", "curves.png")):
        assert paths[key] == tmp_path / "rep" / fname and paths[key].is_file()
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == sorted(
        ["report.json", "report.md", "confusion_matrix.png", "curves.png"])   # no temp files left

    data = json.loads(paths["json"].read_text())
    assert data["title"] == "ResNet50V2: synthetic -> real"
    assert data["history"] == hist
    for key in m:
        assert data[key] == m[key], key                   # every number round-trips exactly
    assert data["accuracy"] == m["accuracy"] and data["confusion_matrix"] == m["confusion_matrix"]

    md = paths["md"].read_text()
    assert md.startswith("# ResNet50V2: synthetic -> real\n")
    cm = np.asarray(m["confusion_matrix"])
    assert f"**Accuracy:** {m['accuracy']:.4f} ({np.trace(cm)} / 240 correct, 4 classes)" in md
    assert f"**Top-2 accuracy:** {m['top_k_accuracy']['2']:.4f}" in md
    assert f"**ROC AUC (one-vs-rest, macro):** {m['roc_auc_ovr_macro']:.4f}" in md
    assert "| Class | Precision | Recall | F1 | Support | ROC AUC |" in md
    for name, r in zip(NAMES, m["per_class"]):
        esc = name.replace("|", "\\|")
        assert (f"| {esc} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | "
                f"{r['support']} | {r['roc_auc']:.4f} |") in md
        i = NAMES.index(name)
        assert f"| **{esc}** | " + " | ".join(str(v) for v in cm[i]) + f" | {cm[i].sum()} |" in md
    for avg in ("macro", "weighted"):
        a = m[avg]
        assert f"| **{avg} avg** | {a['precision']:.4f} | {a['recall']:.4f} | {a['f1']:.4f} | 240 |" in md
    assert "| **Total** | " + " | ".join(str(v) for v in cm.sum(0)) + " | 240 |" in md
    assert "](confusion_matrix.png)" in md and "](curves.png)" in md

    w, h = _png(paths["confusion_matrix"])
    assert 0.6 < w / h < 1.8
    w, h = _png(paths["curves"])
    assert w > h                                             # two panels side by side


def test_write_report_without_history_and_names_from_metrics(tmp_path):
    m = _metrics(seed=3)
    paths = write_report(tmp_path, m, None, "no history")
    assert set(paths) == {"json", "md", "confusion_matrix"}
    assert not (tmp_path / "curves.png").exists()
    data = json.loads(paths["json"].read_text())
    assert data["class_names"] == NAMES and "history" not in data
    md = paths["md"].read_text()
    assert "ROC AUC" not in md and "curves.png" not in md
    # Names passed explicitly override the stored ones.
    paths = write_report(tmp_path / "b", m, ["A", "B", "C", "D"], "renamed")
    data = json.loads(paths["json"].read_text())
    assert data["class_names"] == ["A", "B", "C", "D"]
    assert [r["class"] for r in data["per_class"]] == ["A", "B", "C", "D"]
    assert "| **C** |" in paths["md"].read_text()
    with pytest.raises(ValueError):
        write_report(tmp_path / "c", m, ["x"], "bad names")


def test_render_markdown_zero_support_and_many_classes(tmp_path):
    y = np.array([0, 0, 1, 5])
    m = classification_metrics(y, np.array([0, 1, 1, 0]), 6)
    md = render_markdown(m, title="t")
    assert "| 5 | 0.0000 | 0.0000 | 0.0000 | 1 |" in md
    assert "| 3 | 0.0000 | 0.0000 | 0.0000 | 0 |" in md
    paths = write_report(tmp_path, m, None, "six classes, some empty")
    _png(paths["confusion_matrix"])
    # Many classes: figure stays bounded, text is dropped.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 50, 2000)
    m = classification_metrics(y, y, 50)
    paths = write_report(tmp_path / "big", m, None, "fifty")
    _png(paths["confusion_matrix"])


def test_plot_curves_handles_gaps(tmp_path):
    hist = [dict(epoch=1, train_loss=1.0, train_acc=0.4),
            dict(epoch=2, train_loss=0.8, train_acc=0.5, val_loss=0.9, val_acc=0.45),
            dict(epoch=3, train_loss=float("nan"), train_accuracy=0.6, val_loss=None, val_accuracy=0.5)]
    _png(plot_curves(hist, tmp_path / "c.png"))
    _png(plot_curves([dict(epoch=1, train_loss=0.5)], tmp_path / "one.png"))
    with pytest.raises(ValueError):
        plot_curves([], tmp_path / "none.png")


def test_compare_reports_and_write_comparison(tmp_path):
    real = _metrics(seed=1, acc=0.9)
    syn = _metrics(seed=1, acc=0.6, scores=True)
    reports = {"trained on real": real, "trained on synthetic": syn}
    md = compare_reports(reports)
    assert "| Run | N | Accuracy | Macro precision | Macro recall | Macro F1 | Weighted F1 | Macro ROC AUC |" in md
    better = real["accuracy"] > syn["accuracy"]
    assert better

    def cell(v, bold):
        return f"**{v:.4f}**" if bold else f"{v:.4f}"

    for name, m, other in (("trained on real", real, syn), ("trained on synthetic", syn, real)):
        vals = [m["accuracy"], m["macro"]["precision"], m["macro"]["recall"], m["macro"]["f1"],
                m["weighted"]["f1"]]
        ovals = [other["accuracy"], other["macro"]["precision"], other["macro"]["recall"],
                 other["macro"]["f1"], other["weighted"]["f1"]]
        row = f"| {name} | 240 | " + " | ".join(cell(v, v >= o) for v, o in zip(vals, ovals))
        assert row in md, row
    assert "| trained on real | 240 |" in md and md.count("n/a") == 1      # real has no AUC
    assert f"**{syn['roc_auc_ovr_macro']:.4f}**" in md
    assert "## Per-class F1" in md
    for name, r1, r2 in zip(NAMES, real["per_class"], syn["per_class"]):
        assert f"| {name.replace('|', chr(92) + '|')} | {r1['f1']:.4f} | {r2['f1']:.4f} |" in md

    paths = write_comparison(tmp_path / "cmp", reports)
    assert set(paths) == {"md", "json"}
    assert paths["md"].read_text() == md
    data = json.loads(paths["json"].read_text())
    assert list(data["runs"]) == ["trained on real", "trained on synthetic"]
    s = data["runs"]["trained on synthetic"]
    assert s["accuracy"] == syn["accuracy"] and s["macro_f1"] == syn["macro"]["f1"]
    assert s["macro_precision"] == syn["macro"]["precision"] and s["macro_recall"] == syn["macro"]["recall"]
    assert s["weighted_f1"] == syn["weighted"]["f1"] and s["num_samples"] == 240
    assert s["per_class_f1"] == {n: r["f1"] for n, r in zip(NAMES, syn["per_class"])}
    assert "roc_auc_ovr_macro" not in data["runs"]["trained on real"]

    # A single run: no bold; different class lists: no per-class table; reports read back work.
    one = compare_reports({"only": real})
    assert "**" not in one.split("## Per-class F1")[0].split("\n", 1)[1]
    other = classification_metrics([0, 1], [0, 1], 2, ["x", "y"])
    assert "Per-class F1" not in compare_reports({"a": real, "b": other})
    rep = write_report(tmp_path / "r", real, None, "real")
    assert compare_reports({"x": json.loads(rep["json"].read_text())}) == compare_reports({"x": real})
    with pytest.raises(ValueError):
        compare_reports({})


def test_modules_do_not_import_sklearn(tmp_path):
    code = ("import sys\n"
            "from jaxgen.classifiers.metrics import classification_metrics\n"
            "from jaxgen.classifiers.report import write_report\n"
            "m = classification_metrics([0, 1, 1], [0, 1, 0], 2, scores=[[1, 0], [0, 1], [1, 0]])\n"
            f"write_report({str(tmp_path)!r}, m, None, 't')\n"
            "assert not [k for k in sys.modules if k.split('.')[0] == 'sklearn'], 'sklearn imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(REPO))
