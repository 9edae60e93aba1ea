"""jaxgen.harness.logs: tick reduction, metrics.jsonl without TensorBoard, the progress line."""
import json
import logging
import sys

import numpy as np

from jaxgen.harness import logs


def test_reduce_metrics_weights_lazy_phases_and_keeps_running_values():
    steps = [dict(loss=1.0, pl=4.0, pl_w=1.0, p=0.1), dict(loss=3.0, pl=0.0, pl_w=0.0, p=0.2),
             dict(loss=2.0, pl=2.0, pl_w=1.0, p=0.3)]
    out = logs.reduce_metrics([{k: np.float32(v) for k, v in m.items()} for m in steps], last_keys=("p",))
    assert out == {"loss": 2.0, "pl": 3.0, "p": np.float32(0.3)}
    never = logs.reduce_metrics([dict(r1=5.0, r1_w=0.0)])
    assert never == {}                    # a phase that never ran has no value
    assert logs.non_finite({"a": 1.0, "b": float("nan"), "c": float("inf"), "tick": 3}) == ["b", "c"]


def test_without_clu_metrics_jsonl_is_kept_and_the_warning_comes_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "clu", None)          # `from clu import ...` fails
    monkeypatch.setattr(logs, "_TENSORBOARD_WARNED", False)
    monkeypatch.setenv(logs.TENSORBOARD_ENV, "1")          # conftest turns the writer off
    with caplog.at_level(logging.WARNING):
        for run in ("a", "b"):
            log = logs.MetricsLog(tmp_path / run)
            (tmp_path / run).mkdir()
            log.append(dict(tick=1, kimg=0.5, loss=1.25), nimg=500)
            log.append(dict(tick=2, kimg=1.0, loss=1.0), nimg=1000)
            log.close()
    assert caplog.text.count("TensorBoard scalars disabled") == 1
    rows = [json.loads(ln) for ln in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["tick"] for r in rows] == [1, 2]
    assert logs.MetricsLog(tmp_path / "b").rows_upto(1) == rows[:1]
    assert len((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) == 1


def test_tensorboard_env_off_opens_no_writer_and_warns_nothing(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "clu", None)          # an import would fail and warn
    monkeypatch.setattr(logs, "_TENSORBOARD_WARNED", False)
    for off in ("0", "false", "No"):
        monkeypatch.setenv(logs.TENSORBOARD_ENV, off)
        assert not logs.tensorboard_wanted() and logs.open_tensorboard(tmp_path) is None
    assert "TensorBoard" not in caplog.text
    monkeypatch.setenv(logs.TENSORBOARD_ENV, "1")
    assert logs.tensorboard_wanted()
    monkeypatch.delenv(logs.TENSORBOARD_ENV)
    assert logs.tensorboard_wanted()                       # on by default


def test_progress_line_has_the_common_fields_then_the_experiments():
    stats = dict(tick=7, kimg=3.5, sec_per_kimg=2.0, images_per_sec=500.0)
    line = logs.progress_line(stats, elapsed=3725, eta=65, own="G 0.5")
    assert line.split() == ["tick", "7", "kimg", "3.500", "time", "1h", "02m", "sec/kimg", "2.00",
                            "img/s", "500.0", "ETA", "1m", "05s", "G", "0.5"]
