"""What every experiment script shares: its command line and where it writes.

Each script in ``experiments/`` answers one question a newcomer to RL asks, by training the same
algorithm with one thing changed (``lucidrl.compare.compare_variants``: seeds in parallel
processes, learning curves with a 95% bootstrap band over seeds, final returns with the IQM and
its bootstrap interval). The figures and tables land in ``docs/experiments/<name>/``, which
``docs/experiments.md`` reads from.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args(name: str, description: str, seeds: int = 5) -> argparse.Namespace:
    """--seeds, --jobs, --out, --force and --quick (tiny budgets: a smoke run for the tests)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--seeds", type=int, default=seeds, help=f"seeds per variant (default {seeds})")
    p.add_argument("--jobs", type=int, default=None, help="runs at a time (default: the number of CPU cores)")
    p.add_argument(
        "--out",
        default=str(ROOT / "docs" / "experiments" / name),
        help=f"output directory (default docs/experiments/{name})",
    )
    p.add_argument("--force", action="store_true", help="retrain runs already finished in the output directory")
    p.add_argument(
        "--quick", action="store_true", help="tiny budgets and 2 seeds: checks the script runs, answers nothing"
    )
    args = p.parse_args()
    if args.quick:
        args.seeds = 2
    return args


def budget(args: argparse.Namespace, full: int, quick: int) -> int:
    return quick if args.quick else full
