"""Learning-curve plots from run directories (their ``metrics.csv``), written as PNG files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lucidrl.errors import ConfigError, LucidRLError
from lucidrl.logging import STEP_KEY, read_columns, read_metrics, unwritable_dir

METRIC = "rollout/episode_return"


def load_curve(run_dir: str | os.PathLike, metric: str = METRIC, x: str = STEP_KEY) -> tuple[list[float], list[float]]:
    """(env steps, metric values) of one run; rows without the metric are skipped. ``x``: another column to read
    against, e.g. ``time/elapsed_s`` (seconds of training)."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise LucidRLError(
            f"{str(run_dir)!r} has no metrics.csv: is it a run directory written by `lucidrl train` "
            "or by a model created with run_dir=...?"
        )
    rows = [r for r in read_metrics(path) if metric in r and x in r]
    if not rows:
        columns = read_columns(path)
        if metric not in columns:
            raise LucidRLError(f"{path} has no column {metric!r}; its columns: {', '.join(columns)}")
        raise LucidRLError(f"{path} has no values of {metric!r}")
    return [r[x] for r in rows], [r[metric] for r in rows]


def plot_runs(
    run_dirs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    metric: str = METRIC,
    labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """One figure (``out``: a PNG unless its extension names another format) with the ``metric`` curve of each
    run against env steps; returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = figure_path(out)  # a bad extension fails before any file is read

    labels = list(labels) if labels is not None else [Path(d).name for d in run_dirs]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for run_dir, label in zip(run_dirs, labels):
        x, y = load_curve(run_dir, metric)
        ax.plot(x, y, label=label, linewidth=1.6)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(
        metric.split("/")[-1].replace("_", " ") + (" (mean of last 100 episodes)" if metric == METRIC else "")
    )
    return finish_figure(fig, ax, out, title or metric, legend=len(labels) > 1 or bool(labels[0]))


def figure_path(path: str | os.PathLike) -> Path:
    """The file a figure at ``path`` is written to: ``path``, with ``.png`` added when it has no extension (as
    matplotlib does); a ConfigError for an extension matplotlib cannot write, listing those it can."""
    from matplotlib.backend_bases import FigureCanvasBase

    p = Path(path)
    if not p.suffix:
        return p.with_name(p.name + ".png")
    formats = FigureCanvasBase.get_supported_filetypes()
    if p.suffix[1:].lower() not in formats:
        raise ConfigError(
            f"cannot write a figure as {str(p)!r}: {p.suffix!r} is not an image format matplotlib writes; "
            f"end the name in one of {', '.join('.' + f for f in sorted(formats))} (no extension: .png)"
        )
    return p


def finish_figure(fig, ax, path: str | os.PathLike, title: str, legend: bool = True) -> Path:
    """The last steps every lucidrl plot shares: title, light grid, legend, tight layout; write ``path``
    (``figure_path``), close; returns the path written."""
    import matplotlib.pyplot as plt

    ax.set_title(title)
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:  # (nothing drawn, e.g. a sweep with no finished trial: none)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = figure_path(path)
    try:
        problem = unwritable_dir(path.parent)
        if problem is None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fig.savefig(path)
            except OSError as e:
                problem = e.strerror or str(e)
        if problem is not None:
            raise ConfigError(
                f"cannot write the figure {str(path)!r}: {problem}; give a path in a directory you can write to"
            )
    finally:
        plt.close(fig)
    return path
