"""Logger: console progress, ``metrics.csv`` and TensorBoard events, with DESIGN.md's metric names.

verbose=0: silent. verbose=1: the start and end lines and notes. verbose=2: also a table of every
metric at each log step. ``progress_bar=True`` draws a progress bar (steps, episode return, steps/s,
ETA) at any level, as SB3 does.

Files are written only when a run directory is given: ``metrics.csv`` (one row per update; on
disk within a second, and at close) and TensorBoard event files (at most ``TB_MIN_INTERVAL_S``
apart, the last row always).

Append-only
-----------
Both files are only ever appended to: no row already written is rewritten or reformatted. The
columns of ``metrics.csv`` are fixed once, by its header line, written when the file is made:
``time/total_timesteps``, ``rollout/episode_return``, ``rollout/episode_length`` (empty cells
until an episode has finished), ``time/steps_per_second``, ``time/elapsed_s``, the keys of the
first row's metrics and the ``columns`` the caller declares (metrics that an algorithm logs only
later, e.g. DQN's losses once past ``learning_starts``). A key that first appears later is not
added to the CSV (that would rewrite the file); it still goes to TensorBoard and the logger says
so once. A resumed run (``append=True``) takes its columns from the existing header line; the
rows are never read.

Resuming exactly where a checkpoint was taken
---------------------------------------------
``Logger.position()`` flushes ``metrics.csv`` to disk (flush + fsync) and returns a small JSON
dict, e.g. ``{"csv_bytes": 48213, "step": 1024}``: the size of ``metrics.csv`` and the last step
recorded. The trainer stores it in the checkpoint (``state.json``, key ``"log"``) when it saves,
and passes it back when it resumes from that checkpoint::

    state["log"] = logger.position()                                # at save
    Logger(run_dir, verbose, tensorboard, append=True, resume=state.get("log"))   # at resume

With ``resume``, rows written after the checkpoint (by a run that was killed, or that went on
without saving) are cut off with one ``os.truncate`` to ``csv_bytes``: the bytes before that
offset are never touched, so a kill at any moment (during training, during the truncation, during
the next rows) loses nothing the checkpoint had, and the steps in the file keep increasing without
duplicates. Then a torn last line (a kill in the middle of a write) is cut back to its last newline.
If the file is shorter than ``csv_bytes`` it is kept (with a warning); if the line ending at
``csv_bytes`` is not the checkpoint's step (the file is not the one the checkpoint saw), or the dict
has no ``csv_bytes`` (``{"step": N}``, e.g. for a checkpoint written before ``position`` existed),
the rows after step ``N`` are found by reading the file backwards from its end, and cut off.
TensorBoard's writer is opened with ``purge_step=step + 1``, so TensorBoard's readers discard
the events of the earlier run after the checkpoint's step.

``append=True`` without ``resume`` (a second ``learn`` in the same process) appends after the rows
as they are (a torn last line is still dropped). ``append=False`` starts a new ``metrics.csv``, and so
a new run: in a directory that already holds a run's ``metrics.csv`` it is refused (``check_run_dir``),
since training there would replace that run's ``model/`` and checkpoints and mix two runs' logs.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import sys
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lucidrl.errors import ConfigError, LucidRLError

STEP_KEY = "time/total_timesteps"
EPISODE_KEYS = ("rollout/episode_return", "rollout/episode_length")
RECENT_EPISODES = 100  # rollout/episode_return and _length: means over the latest this many episodes (as SB3's)
TIME_KEYS = ("time/steps_per_second", "time/elapsed_s")
TB_MIN_INTERVAL_S = 0.01
"""TensorBoard gets at most one row per this many seconds (and always the last one); metrics.csv gets every row.

Why: TensorBoard's event files checksum every record with a pure-Python CRC32C, ~0.3 ms for a row of
~17 metrics. A2C on CartPole logs 2,500 updates in ~1.4 s of training: every row to TensorBoard made
the run ~1.6x slower (1.39 s -> 2.17 s measured); at most 100 rows a second caps the cost near 3%."""
CSV_FLUSH_INTERVAL_S = 1.0
"""metrics.csv is flushed at most once per this many seconds (and by ``position`` and ``close``)."""
_BLOCK = 1 << 16


class Logger:
    def __init__(
        self,
        run_dir: str | os.PathLike | None,
        verbose: int = 1,
        tensorboard: bool = True,
        append: bool = False,
        resume: dict[str, Any] | None = None,
        columns: Iterable[str] = (),
    ):
        """``append=True`` keeps the rows of an existing ``metrics.csv`` and appends after them;
        ``resume`` (implies ``append``) is the dict of ``position()`` saved with the checkpoint the
        run resumes from: rows after it are cut off first (module docstring). ``columns``: metric
        keys to have columns in a new ``metrics.csv`` even if the first row lacks them. A new log
        (neither) in a ``run_dir`` that holds a run's ``metrics.csv``, or a ``run_dir`` that cannot be
        created or written, is a ConfigError (``check_run_dir``)."""
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.verbose = verbose
        self.columns: list[str] = []  # the CSV header, fixed once (by the first row, or an existing file's)
        self.declared = [k for k in columns if k != STEP_KEY and k not in EPISODE_KEYS + TIME_KEYS]
        self.recent_returns: deque[float] = deque(maxlen=RECENT_EPISODES)
        self.recent_lengths: deque[float] = deque(maxlen=RECENT_EPISODES)
        self._bar: Any = None  # tqdm, with progress_bar
        self._tb: Any = None  # torch.utils.tensorboard.SummaryWriter, with tensorboard
        self._csv_file: Any = None  # metrics.csv, open for appending once a row is written
        self._csv_bytes = 0  # size of metrics.csv at the last position() / close()
        self._known: set[str] = set()
        self._flushed = -math.inf
        self._tb_written = -math.inf
        self._tb_pending: dict[str, Any] | None = None
        self._last_step = resume.get("step") if resume else None
        self.last_row: dict[str, Any] = {}  # the latest row, as written
        append = append or resume is not None
        if self.run_dir is not None:
            check_run_dir(self.run_dir, new=not append)
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:  # e.g. under /proc, or a path that appeared meanwhile
                raise ConfigError(
                    f"cannot create the run directory {str(self.run_dir)!r} ({e.strerror or e}); "
                    "give a directory you can write to"
                ) from None
            self.path = self.run_dir / "metrics.csv"
            if append and self.path.exists():
                self._open_existing(resume)
            if tensorboard:
                from tensorboard.compat.proto.summary_pb2 import Summary
                from torch.utils.tensorboard import SummaryWriter

                purge = None
                if resume and resume.get("step") is not None:
                    purge = int(resume["step"]) + 1  # readers drop the earlier run's events after the checkpoint
                    _after_existing_events(self.run_dir)  # and the new event file must sort after theirs
                self._tb = SummaryWriter(str(self.run_dir), purge_step=purge)
                self._summary, self._summary_value = Summary, Summary.Value

    # ------------------------------------------------------------------ metrics.csv on disk
    def _open_existing(self, resume: dict[str, Any] | None) -> None:
        """Take the columns from the header line, cut back to ``resume`` and any torn line, open for appending."""
        with open(self.path, "rb") as f:
            first = f.readline()
        if not first.endswith(b"\n"):  # empty, or a header torn while being written: no rows to keep
            self.info(f"{self.path}: no complete header line; a new metrics.csv is started")
            return
        header_end = len(first)
        try:
            self.columns = next(csv.reader([first.decode("utf-8")]))
        except UnicodeDecodeError:
            raise LucidRLError(
                f"{self.path}: its header line is not UTF-8 text, so it is not a metrics.csv written by lucidrl; "
                "move it away (a new one is then started) or give another run directory"
            ) from None
        size = os.path.getsize(self.path)
        keep = size
        if resume:
            keep = self._resume_offset(resume, header_end, size)
        keep = max(header_end, _last_newline_end(self.path, header_end, keep))  # a torn last line is dropped
        if keep < size:
            os.truncate(self.path, keep)  # one system call; the bytes before ``keep`` are untouched
        self._csv_bytes = keep
        if resume is None or resume.get("step") is None:
            last = _step_of_line_ending_at(self.path, keep, self.columns, header_end)
            self._last_step = int(last) if last is not None and last.is_integer() else last
        self._open_append()

    def _resume_offset(self, resume: dict[str, Any], header_end: int, size: int) -> int:
        """The size ``metrics.csv`` is cut back to when resuming at ``resume`` (see the module docstring)."""
        csv_bytes, step = resume.get("csv_bytes"), resume.get("step")
        if csv_bytes is not None:
            csv_bytes = max(int(csv_bytes), header_end)  # a position taken before the first row: the header
            if csv_bytes > size:
                self.info(
                    f"warning: {self.path} has {size} bytes, fewer than the {csv_bytes} the checkpoint "
                    "recorded; its rows are kept as they are"
                )
                return size
            if step is None or csv_bytes == header_end:
                return csv_bytes
            at = _step_of_line_ending_at(self.path, csv_bytes, self.columns, header_end)
            if at is not None and at == float(step):
                return csv_bytes
            self.info(
                f"warning: {self.path} does not hold the checkpoint's row (step {step}) at byte {csv_bytes}; "
                f"the rows after step {step} are found from the end of the file"
            )
        if step is None:
            return size
        if STEP_KEY not in self.columns:
            self.info(f"warning: {self.path} has no {STEP_KEY} column; its rows are kept as they are")
            return size
        return _offset_after_step(self.path, header_end, size, self.columns.index(STEP_KEY), float(step))

    def _open_append(self) -> None:
        self._csv_file = open(self.path, "a", newline="", encoding="utf-8")
        self._csv = csv.writer(self._csv_file)
        self._known = set(self.columns)
        missing = [k for k in self.declared if k not in self._known]
        if missing:
            self._note_dropped(missing)

    def _create(self, row: dict[str, Any]) -> None:
        """A new metrics.csv holding only its header (written to a temporary name and renamed: atomic)."""
        self.columns = list(dict.fromkeys([STEP_KEY, *EPISODE_KEYS, *TIME_KEYS, *row, *self.declared]))
        tmp = self.path.with_name(f".metrics.csv.{os.getpid()}.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow(self.columns)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._csv_bytes = os.path.getsize(self.path)
        self._open_append()

    def _note_dropped(self, keys: list[str]) -> None:
        self._known.update(keys)
        self.info(
            f"{self.path}: its columns are fixed by its header, so {', '.join(map(repr, keys))} "
            f"{'goes' if len(keys) == 1 else 'go'} to TensorBoard only"
        )

    def position(self) -> dict[str, Any]:
        """Flush ``metrics.csv`` to disk and return what a checkpoint records to resume exactly here:
        ``{"csv_bytes": size of metrics.csv (None without a run directory), "step": last step recorded
        (None before any)}``. Also writes TensorBoard's pending row and flushes its events."""
        if self._csv_file is not None:
            self._csv_file.flush()
            os.fsync(self._csv_file.fileno())
            self._flushed = time.perf_counter()
            self._csv_bytes = os.fstat(self._csv_file.fileno()).st_size
        if self._tb is not None:
            if self._tb_pending is not None:
                self._write_tb(self._tb_pending)
            self._tb.flush()
        return {"csv_bytes": self._csv_bytes if self.run_dir is not None else None, "step": self._last_step}

    # ------------------------------------------------------------------ console
    def info(self, message: str) -> None:
        if self.verbose >= 1:
            (self._bar.write if self._bar is not None else print)(message)

    def start(self, total: int, initial: int, progress_bar: bool) -> None:
        self.t0 = time.perf_counter()
        self.initial = initial
        if progress_bar:  # asked for: shown at any verbose level, as SB3 does
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total,
                initial=initial,
                unit="step",
                dynamic_ncols=True,
                file=sys.stdout,
                mininterval=0.5,
                smoothing=0.1,
            )

    def add_episodes(self, returns: list[float], lengths: list[int]) -> None:
        self.recent_returns.extend(returns)
        self.recent_lengths.extend(lengths)

    @property
    def mean_return(self) -> float:
        return sum(self.recent_returns) / len(self.recent_returns) if self.recent_returns else math.nan

    # ------------------------------------------------------------------ metrics
    @property
    def writer(self) -> Any:
        """The run's TensorBoard ``SummaryWriter`` (None without TensorBoard events, or after ``close``)."""
        return self._tb

    def record(self, step: int, metrics: dict[str, float], exclude: dict[str, tuple[str, ...]] | None = None) -> None:
        """One row of metrics at env step ``step``; adds the episode and speed figures. ``exclude``: metric ->
        SB3's format names it stays out of (``"csv"``: metrics.csv; ``"tensorboard"``; ``"stdout"``: the
        verbose=2 table)."""
        elapsed = time.perf_counter() - self.t0
        row: dict[str, Any] = {STEP_KEY: step}
        if self.recent_returns:
            row["rollout/episode_return"] = self.mean_return
            row["rollout/episode_length"] = sum(self.recent_lengths) / len(self.recent_lengths)
        row["time/steps_per_second"] = (step - self.initial) / max(elapsed, 1e-9)
        row["time/elapsed_s"] = elapsed
        row.update(metrics)
        self._last_step = step
        self.last_row = row  # (also sent to a logger given with Algorithm.set_logger)
        if self._bar is not None:  # tqdm redraws at most every mininterval seconds
            self._bar.set_postfix_str(
                (  # GRPO's batches have a mean reward, not episodes
                    f"return={row.get('rollout/episode_return', math.nan):.1f}"
                    if "rollout/episode_return" in row or "rollout/reward" not in row
                    else f"reward={row['rollout/reward']:.3f}"
                )
                + f" sps={row['time/steps_per_second']:.0f}",
                refresh=False,
            )
            self._bar.update(step - self._bar.n)

        def without(fmt: str) -> dict[str, Any]:  # (the step is every row's, whatever a callback excluded)
            return {k: v for k, v in row.items() if k == STEP_KEY or fmt not in exclude.get(k, ())} if exclude else row

        if self.verbose >= 2:
            shown = without("stdout").items()
            self.info(" | ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown))
        if self._tb is not None:
            now = time.perf_counter()
            if now - self._tb_written >= TB_MIN_INTERVAL_S:
                self._write_tb(without("tensorboard"))
                self._tb_written = now
            else:
                self._tb_pending = without("tensorboard")  # written at the next row due, at position(), or close
        if self.run_dir is not None:
            self._write_csv(without("csv"))

    def _write_tb(self, row: dict[str, Any]) -> None:
        """One TensorBoard event holding every scalar of the row (one add_scalar per metric costs ~30 us each)."""
        values = [
            self._summary_value(tag=k, simple_value=float(v))
            for k, v in row.items()
            if k != STEP_KEY and isinstance(v, (int, float))
        ]
        self._tb.file_writer.add_summary(self._summary(value=values), row[STEP_KEY])
        self._tb_pending = None

    def _write_csv(self, row: dict[str, Any]) -> None:
        if self._csv_file is None:
            self._create(row)
        if not self._known.issuperset(row):
            self._note_dropped([k for k in row if k not in self._known])
        self._csv.writerow([row.get(k, "") for k in self.columns])
        now = time.perf_counter()
        if now - self._flushed >= CSV_FLUSH_INTERVAL_S:  # on disk within a second (and at close), not at every row
            self._csv_file.flush()
            self._flushed = now

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._tb is not None:
            if self._tb_pending is not None:  # the last row always reaches TensorBoard
                self._write_tb(self._tb_pending)
            self._tb.flush()
            self._tb.close()
            self._tb = None
        if self._csv_file is not None:
            self._csv_file.flush()
            self._csv_bytes = os.fstat(self._csv_file.fileno()).st_size
            self._csv_file.close()
            self._csv_file = None


# ---------------------------------------------------------------------- run directories
def unwritable_dir(path: str | os.PathLike) -> str | None:
    """Why a directory at ``path`` cannot be used to write files in, as far as can be told without writing:
    ``path`` or its nearest existing parent is a file, or that parent is not writable. None: no reason found."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        return f"{str(path)!r} is a file, not a directory"
    parent = path
    while not parent.exists():  # ends at "." or "/" at the latest
        parent = parent.parent
    if not parent.is_dir():
        return f"{str(parent)!r} is a file, not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{str(parent)!r} is not writable (permission denied)"
    return None


def check_run_dir(run_dir: str | os.PathLike, new: bool = False) -> Path:
    """Check, writing nothing, that ``run_dir`` can hold a run: a directory that exists and can be written, or
    a path whose nearest existing parent is one (the Logger creates the rest). ``new``: for a new run, which
    must not go where a run already is (its ``metrics.csv``): it would replace that run's ``model/`` and
    checkpoints and mix the two runs' logs. Raises a ConfigError that names the problem and the fixes."""
    path = Path(run_dir)
    problem = unwritable_dir(path)
    if problem is not None:
        raise ConfigError(
            f"cannot use {str(path)!r} as the run directory: {problem}; give a directory you can write to"
        )
    if new and (path / "metrics.csv").exists():
        raise ConfigError(
            f"the run directory {str(path)!r} already holds a run (its metrics.csv); a new run there would replace "
            "its model/ and checkpoints and mix the two runs' logs. Give a new run directory (--run-dir DIR, or "
            f"run_dir=...), continue that run (`lucidrl train ALGO --resume {path}`, or in Python "
            "learn(..., reset_num_timesteps=False): a second learn() of a model with the default "
            "reset_num_timesteps=True starts a new run), or delete the directory first"
        )
    return path


# ---------------------------------------------------------------------- reading metrics.csv
def read_metrics(path: str | os.PathLike) -> list[dict[str, float]]:
    """The rows of a ``metrics.csv`` as dicts of floats (empty cells left out).

    A last line without its newline (torn by a kill in the middle of a write) is skipped. A file that is
    not a metrics.csv (not UTF-8 text, a cell that is not a number) is a LucidRLError naming it."""
    rows: list[dict[str, float]] = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(line for line in f if line.endswith("\n"))
        try:
            for row in reader:
                rows.append({k: float(v) for k, v in row.items() if k is not None and v not in ("", None)})
        except UnicodeDecodeError:
            raise LucidRLError(
                f"{path} is not a metrics.csv written by lucidrl: it holds bytes that are not UTF-8 text "
                "(a damaged or foreign file)"
            ) from None
        except (ValueError, csv.Error) as e:  # a cell that is not a number, a NUL byte
            raise LucidRLError(f"{path} is not a metrics.csv written by lucidrl: line {reader.line_num}: {e}") from None
    return rows


def read_columns(path: str | os.PathLike) -> list[str]:
    """The column names of a ``metrics.csv`` (its header line; ``[]`` for an empty file)."""
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        return next(csv.reader(f), [])


def _last_newline_end(path: Path, start: int, end: int) -> int:
    """The offset just after the last b"\\n" in ``path[start:end]`` (``start`` when there is none)."""
    with open(path, "rb") as f:
        pos = end
        while pos > start:
            n = min(_BLOCK, pos - start)
            f.seek(pos - n)
            i = f.read(n).rfind(b"\n")
            if i >= 0:
                return pos - n + i + 1
            pos -= n
    return start


def _cell(line: bytes, index: int) -> float | None:
    """Cell ``index`` of one CSV line as a float (None if it is not there or not a number)."""
    try:
        return float(next(csv.reader(io.StringIO(line.decode("utf-8"))))[index])
    except (ValueError, IndexError, StopIteration, UnicodeDecodeError):
        return None


def _step_of_line_ending_at(path: Path, end: int, columns: list[str], header_end: int) -> float | None:
    """The step of the row whose line ends at byte ``end`` (None for the header, or no such row)."""
    if end <= header_end or STEP_KEY not in columns:
        return None
    start = _last_newline_end(path, header_end, end - 1)
    with open(path, "rb") as f:
        f.seek(start)
        line = f.read(end - start)
    return _cell(line, columns.index(STEP_KEY)) if line.endswith(b"\n") else None


def _offset_after_step(path: Path, header_end: int, end: int, index: int, step: float) -> int:
    """The end of the last row at or before ``step``, read backwards from ``end`` (the rows after it
    are the ones a killed run logged after its checkpoint); ``header_end`` if there is none."""
    end = _last_newline_end(path, header_end, end)
    with open(path, "rb") as f:
        pos, buf = end, b""  # buf = path[pos:end], ``end`` at a line boundary
        while end > header_end:
            i = buf.rfind(b"\n", 0, len(buf) - 1)  # the newline before the last line of buf
            if i < 0 and pos > header_end:  # that line starts before buf: read another block
                n = min(_BLOCK, pos - header_end)
                pos -= n
                f.seek(pos)
                buf = f.read(n) + buf
                continue
            s = _cell(buf[i + 1 :], index)
            if s is not None and s <= step:
                return end
            end -= len(buf) - (i + 1)
            buf = buf[: i + 1]
    return header_end


def _after_existing_events(run_dir: Path) -> None:
    """Wait (under a second, rarely) until the wall clock is past every event file's start second, so a
    new event file's name (``events.out.tfevents.<seconds>.<host>.<pid>.<n>``) sorts after theirs:
    TensorBoard reads a directory's event files in name order, and a purge applies to what it read before."""
    stamps = [
        int(m.group(1))
        for p in run_dir.glob("events.out.tfevents.*")
        if (m := re.match(r"events\.out\.tfevents\.(\d+)\.", p.name))
    ]
    if stamps:
        wait = max(stamps) + 1 - time.time()
        if 0 < wait <= 1.0:
            time.sleep(wait)
