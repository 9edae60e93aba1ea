"""Progress lines: count/total, rate and ETA from an injected clock, logged when due or done."""
import logging
import math

from jaxgen.utils.progress import Progress, format_duration


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_rate_eta_and_when_lines_are_printed(caplog):
    caplog.set_level(logging.INFO, logger="jaxgen")
    clock = Clock()
    p = Progress(1000, "generate", every=10.0, clock=clock)
    assert p.eta == math.inf and p.rate == 0.0          # nothing done, no time passed
    clock.t += 4.0
    assert p.update(100) is None and caplog.messages == []   # 4 s < every: silent
    assert p.rate == 25.0 and p.eta == 900 / 25.0       # 100 in 4 s; 900 left
    clock.t += 6.0                                      # 10 s since the start: due
    text = p.update(150)
    assert text == caplog.messages[-1] == "generate: 250/1000 (25%)  25/s  ETA 30s"
    clock.t += 5.0
    assert p.update(50) is None                         # 5 s since the last line
    clock.t += 15.0
    assert p.update(700) == "generate: 1000/1000 (100%)  33.3/s  done in 30s"
    assert len(caplog.messages) == 2 and p.eta == 0.0


def test_resume_counts_only_new_work_and_done_always_prints(caplog):
    caplog.set_level(logging.INFO, logger="jaxgen")
    clock = Clock()
    p = Progress(10, "evolve healthy", every=60.0, done=6, unit="images", clock=clock)
    clock.t += 8.0
    p.update(2)                                         # 2 new in 8 s: 0.25/s, 2 left -> 8 s
    assert p.rate == 0.25 and p.eta == 8.0 and caplog.messages == []
    clock.t += 8.0
    p.update(2)
    assert caplog.messages == ["evolve healthy: 10/10 images (100%)  0.25/s  done in 16s"]
    p.update(0)
    assert len(caplog.messages) == 1                    # the final line is printed once


def test_tail_is_added_to_the_logged_line_and_quiet_logs_nothing(caplog):
    caplog.set_level(logging.INFO, logger="jaxgen")
    clock = Clock()
    p = Progress(2, "project", every=0.0, unit="steps", clock=clock, tail=lambda: "  dist 0.5")
    clock.t += 1.0
    assert p.update(2) == "project: 2/2 steps (100%)  2/s  done in 1s"
    assert caplog.messages == ["project: 2/2 steps (100%)  2/s  done in 1s  dist 0.5"]
    q = Progress(2, "xgb", every=0.0, clock=clock, quiet=True)
    assert q.update(2) is not None and len(caplog.messages) == 1


def test_iterate_counts_each_item_after_it_is_used(caplog):
    caplog.set_level(logging.INFO, logger="jaxgen")
    clock = Clock()
    p = Progress(7, "features", every=0.0, clock=clock)
    seen = []
    for batch in p.iterate([[1, 2, 3], [4, 5, 6], [7]], size=len):
        seen.append((p.done, len(batch)))
        clock.t += 1.0
    assert seen == [(0, 3), (3, 3), (6, 1)]
    lines = caplog.messages
    assert [ln.split(":")[1].split()[0] for ln in lines] == ["3/7", "6/7", "7/7"]
    assert lines[1] == "features: 6/7 (86%)  3/s  ETA 0s"   # 1 left at 3/s: 0.33 s


def test_format_duration():
    assert [format_duration(s) for s in (0, 12.4, 59.6, 61, 281, 3600, 7500)] == \
        ["0s", "12s", "1m00s", "1m01s", "4m41s", "1h00m", "2h05m"]
    assert format_duration(math.inf) == "?" and format_duration(math.nan) == "?"
