"""metrics.csv and TensorBoard events are append-only, and a run resumed from a checkpoint's
``Logger.position()`` continues its logs exactly there: no row lost or altered, no step twice,
whenever the run before was killed."""

import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest

import lucidrl.logging as lg
from lucidrl.errors import ConfigError, LucidRLError
from lucidrl.logging import STEP_KEY, Logger, read_metrics

HEADER = [STEP_KEY, "rollout/episode_return", "rollout/episode_length", "time/steps_per_second", "time/elapsed_s"]


def log(logger, steps, extra=None):
    for s in steps:
        logger.record(s, {"m/half": s / 2, **(extra or {})})


def started(run, verbose=0, tensorboard=False, initial=0, **kw):
    logger = Logger(run, verbose, tensorboard, **kw)
    logger.start(10**6, initial, progress_bar=False)
    return logger


def csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def steps_of(path):
    return [int(r[0]) for r in csv_rows(path)[1:]]


def test_header_is_written_once_and_later_keys_never_rewrite_the_file(tmp_path, capsys):
    run = tmp_path / "run"
    logger = started(run, verbose=1, columns=["loss/late_but_declared"])
    log(logger, [1, 2])
    logger.position()
    before = (run / "metrics.csv").read_bytes()
    logger.add_episodes([10.0], [10])
    log(logger, [3, 4], {"loss/late_but_declared": 1.5, "diag/new": 1.0, "diag/other": 2.0})
    log(logger, [5], {"diag/new": 1.0})
    logger.close()
    after = (run / "metrics.csv").read_bytes()
    assert after.startswith(before) and len(after) > len(before)
    rows = csv_rows(run / "metrics.csv")
    assert rows[0] == HEADER + ["m/half", "loss/late_but_declared"]  # episode columns before any episode ended
    assert rows[1][1:3] == ["", ""] and rows[3][1:3] == ["10.0", "10.0"] and rows[3][6] == "1.5"
    assert "diag/new" not in rows[0]
    out = capsys.readouterr().out
    assert out.count("'diag/new', 'diag/other' go to TensorBoard only") == 1 and out.count("diag/new") == 1
    # a resumed logger takes the columns from the header line, whatever its rows hold
    resumed = started(run, append=True, initial=5)
    log(resumed, [6], {"loss/late_but_declared": 2.0})
    resumed.close()
    assert (run / "metrics.csv").read_bytes().startswith(after)
    assert csv_rows(run / "metrics.csv")[-1][0] == "6" and csv_rows(run / "metrics.csv")[-1][6] == "2.0"
    assert [r["m/half"] for r in read_metrics(run / "metrics.csv")] == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]


def test_resume_truncates_to_the_position_and_appends(tmp_path):
    run = tmp_path / "run"
    logger = started(run)
    log(logger, range(1, 11))
    pos = logger.position()
    assert pos == {"csv_bytes": os.path.getsize(run / "metrics.csv"), "step": 10}
    kept = (run / "metrics.csv").read_bytes()
    log(logger, range(11, 21), {"m/after": 1.0})  # logged after the checkpoint, then the run died
    logger.close()
    assert json.loads(json.dumps(pos)) == pos  # fits in state.json as it is
    resumed = started(run, append=True, resume=pos, initial=10)
    assert resumed.position() == pos  # cut back exactly to the checkpoint
    log(resumed, range(11, 16))
    resumed.close()
    data = (run / "metrics.csv").read_bytes()
    assert data.startswith(kept)  # every earlier row byte-identical
    assert steps_of(run / "metrics.csv") == list(range(1, 16))  # strictly increasing, no duplicates
    # a checkpoint without csv_bytes (written before position() existed): the rows after its step go
    log_again = started(run, append=True, resume={"step": 12}, initial=12)
    log_again.close()
    assert steps_of(run / "metrics.csv") == list(range(1, 13))
    assert (run / "metrics.csv").read_bytes() == data[: len(data) - sum(len(x) for x in data.splitlines(True)[-3:])]
    # a second learn() in the same process (append without resume) appends after the rows as they are
    more = started(run, append=True, initial=12)
    assert more.position() == {"csv_bytes": os.path.getsize(run / "metrics.csv"), "step": 12}
    assert isinstance(more.position()["step"], int)
    log(more, [13])
    more.close()
    assert steps_of(run / "metrics.csv") == list(range(1, 14))


def test_resume_checks_the_position_belongs_to_this_file(tmp_path, capsys):
    run = tmp_path / "run"
    logger = started(run)
    log(logger, range(1, 6))
    pos = logger.position()
    logger.close()
    # the file is shorter than the checkpoint says: kept as it is, with a warning
    kept = (run / "metrics.csv").read_bytes()
    started(run, verbose=1, append=True, resume={**pos, "csv_bytes": pos["csv_bytes"] + 100}).close()
    assert (run / "metrics.csv").read_bytes() == kept and "fewer than" in capsys.readouterr().out
    # the row ending at csv_bytes is not the checkpoint's step: cut after that step instead
    started(run, verbose=1, append=True, resume={"csv_bytes": pos["csv_bytes"], "step": 3}).close()
    assert steps_of(run / "metrics.csv") == [1, 2, 3] and "does not hold" in capsys.readouterr().out


def test_a_torn_last_line_is_skipped_by_read_metrics_and_dropped_on_resume(tmp_path):
    run = tmp_path / "run"
    logger = started(run)
    log(logger, range(1, 4))
    pos = logger.position()
    log(logger, [4])
    logger.close()
    whole = (run / "metrics.csv").read_bytes()
    torn = whole + b"5,,,12.5,0.0"  # a kill in the middle of a write
    (run / "metrics.csv").write_bytes(torn)
    assert [r[STEP_KEY] for r in read_metrics(run / "metrics.csv")] == [1.0, 2.0, 3.0, 4.0]
    started(run, append=True).close()  # append without resume: only the torn line goes
    assert (run / "metrics.csv").read_bytes() == whole
    (run / "metrics.csv").write_bytes(torn)
    resumed = started(run, append=True, resume=pos, initial=3)
    log(resumed, [4, 5])
    resumed.close()
    assert steps_of(run / "metrics.csv") == [1, 2, 3, 4, 5]
    assert all(len(r) == len(HEADER) + 1 for r in csv_rows(run / "metrics.csv"))
    # a header torn while it was being written: a new file is started
    (run / "metrics.csv").write_bytes(b"time/total_tim")
    fresh = started(run, append=True, resume={"csv_bytes": 14, "step": None})
    log(fresh, [1])
    fresh.close()
    assert steps_of(run / "metrics.csv") == [1]


WORKER = r"""
import importlib.util, json, os, sys
from pathlib import Path

spec = importlib.util.spec_from_file_location("lucidrl_logging", sys.argv[1])  # without torch: starts in ms
lg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lg)
run, rows = Path(sys.argv[2]), int(sys.argv[3])
ckpt = run / "position.json"
resume = json.loads(ckpt.read_text()) if ckpt.exists() else None
print("ready", flush=True)
logger = lg.Logger(run, verbose=0, tensorboard=False, append=True, resume=resume)
step = (resume or {}).get("step") or 0
logger.start(10 ** 9, step, progress_bar=False)
for _ in range(rows or 10 ** 9):
    step += 1
    logger.record(step, {"m/half": step / 2, "m/text_width": float("1" * (step % 17 + 1))})
    if step % 301 == 0 or _ == rows - 1:  # a checkpoint (rows between fill more than the 8 KiB buffer)
        tmp = ckpt.with_name("position.tmp")
        tmp.write_text(json.dumps(logger.position()))
        os.replace(tmp, ckpt)
logger.close()
"""


def check_rows(segment: bytes, first_step: int, ncols: int) -> int:
    """The rows of ``segment`` are whole, for consecutive steps from ``first_step``, with the worker's
    values; returns the last step."""
    step = first_step - 1
    assert segment.endswith(b"\n") or not segment
    for row in csv.reader(segment.decode().splitlines()):
        step += 1
        assert len(row) == ncols and int(row[0]) == step
        assert row[5] == repr(step / 2) and row[6] == repr(float("1" * (step % 17 + 1)))
    return step


def test_a_run_killed_at_random_moments_resumes_without_losing_or_repeating_a_row(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    cmd = [sys.executable, str(worker), lg.__file__, str(run)]
    subprocess.run(cmd + ["40"], check=True, timeout=60)
    ncols = len(HEADER) + 2
    prefix = (run / "metrics.csv").read_bytes()
    last = check_rows(prefix.split(b"\n", 1)[1], 1, ncols)
    assert last == 40 == json.loads((run / "position.json").read_text())["step"]
    rng = random.Random(0)
    kills = 0
    for _trial in range(8):
        p = subprocess.Popen(cmd + ["0"], stdout=subprocess.PIPE)
        assert p.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.003, 0.2))
        p.send_signal(signal.SIGKILL)
        kills += p.wait(timeout=30) == -signal.SIGKILL
        data = (run / "metrics.csv").read_bytes()
        assert data.startswith(prefix)  # nothing the last checkpoint had is lost or altered
        pos = json.loads((run / "position.json").read_text())
        assert pos["csv_bytes"] >= len(prefix)
        last = check_rows(data[len(prefix) : pos["csv_bytes"]], last + 1, ncols)
        assert last == pos["step"]
        prefix = data[: pos["csv_bytes"]]
    assert kills == 8
    subprocess.run(cmd + ["100"], check=True, timeout=60)  # the last resume runs to its end
    data = (run / "metrics.csv").read_bytes()
    assert data.startswith(prefix)
    assert check_rows(data.split(b"\n", 1)[1], 1, ncols) == last + 100  # every step once, in order, no torn row
    assert [r["m/half"] for r in read_metrics(run / "metrics.csv")] == [s / 2 for s in range(1, last + 101)]


def test_tensorboard_after_a_resume_shows_each_step_once(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setattr(lg, "TB_MIN_INTERVAL_S", 0.0)
    run = tmp_path / "run"
    logger = started(run, tensorboard=True)
    log(logger, range(1, 6))
    pos = logger.position()
    log(logger, range(6, 10), {"m/tag": 0.0})  # after the checkpoint: to be purged
    logger.close()
    resumed = started(run, tensorboard=True, append=True, resume=pos, initial=5)
    log(resumed, range(6, 9), {"m/tag": 1.0})
    resumed.close()
    acc = EventAccumulator(str(run))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("m/half")] == [(s, s / 2) for s in range(1, 9)]
    assert [(e.step, e.value) for e in acc.Scalars("m/tag")] == [(s, 1.0) for s in range(6, 9)]


def test_a_new_log_never_replaces_a_runs_metrics(tmp_path):
    """append=False starts a new run: where a run's metrics.csv is, it is refused, the file untouched; appending
    and resuming still work, and a directory without metrics.csv (a new one, or one holding other files) is fine."""
    run = tmp_path / "run"
    logger = started(run)
    log(logger, [1, 2])
    logger.close()
    kept = (run / "metrics.csv").read_bytes()
    with pytest.raises(ConfigError, match=rf"the run directory {re.escape(repr(str(run)))} already holds a run"):
        Logger(run, 0, False)
    assert (run / "metrics.csv").read_bytes() == kept
    more = started(run, append=True, initial=2)
    log(more, [3])
    more.close()
    assert steps_of(run / "metrics.csv") == [1, 2, 3]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    started(other).close()


def test_a_run_directory_that_cannot_be_made_is_a_config_error(tmp_path):
    (tmp_path / "afile").write_text("")
    for run_dir in (tmp_path / "afile", tmp_path / "afile" / "run"):
        with pytest.raises(
            ConfigError, match=rf"{re.escape(repr(str(tmp_path / 'afile')))} is a file, not a directory"
        ):
            Logger(run_dir, 0, False)


def test_a_damaged_metrics_csv_is_named_not_a_unicode_traceback(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_bytes(b"time/total_timesteps,m\n1,\xff\n")
    with pytest.raises(LucidRLError, match="is not a metrics.csv written by lucidrl: it holds bytes that are not UTF"):
        read_metrics(run / "metrics.csv")
    (run / "metrics.csv").write_bytes(b"time/total_\xff,m\n1,2\n")
    with pytest.raises(LucidRLError, match="its header line is not UTF-8 text"):
        Logger(run, 0, False, append=True)
