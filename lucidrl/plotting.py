"""Learning-curve plots from run directories (their ``metrics.csv``), written as PNG files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lucidrl.errors import LucidRLError
from lucidrl.logging import STEP_KEY, read_metrics

METRIC = "rollout/episode_return"


def load_curve(run_dir: str | os.PathLike, metric: str = METRIC) -> tuple[list[float], list[float]]:
    """(env steps, metric values) of one run; rows without the metric are skipped."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise LucidRLError(
            f"{str(run_dir)!r} has no metrics.csv: is it a run directory written by `lucidrl train` "
            "or by a model created with run_dir=...?"
        )
    rows = [r for r in read_metrics(path) if metric in r and STEP_KEY in r]
    if not rows:
        raise LucidRLError(f"{path} has no values of {metric!r}")
    return [r[STEP_KEY] for r in rows], [r[metric] for r in rows]


def plot_runs(
    run_dirs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    metric: str = METRIC,
    labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """One PNG with the ``metric`` curve of each run against env steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def finish_figure(fig, ax, path: str | os.PathLike, title: str, legend: bool = True) -> Path:
    """The last steps every lucidrl plot shares: title, light grid, legend, tight layout; write ``path``, close."""
    import matplotlib.pyplot as plt

    ax.set_title(title)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
