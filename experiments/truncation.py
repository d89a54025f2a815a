"""Why must a time-limit truncation be bootstrapped?

Pendulum-v1 never ends by itself: Gymnasium cuts every episode at 200 steps (``truncated``). The
task is to keep the pendulum up forever; the cut is only there so that training sees fresh starts.
lucidrl bootstraps a truncated episode's return with V(final observation) (``lucidrl.rollout``,
``lucidrl.advantages``). Here PPO learns Pendulum-v1 three ways, all else equal:

* ``bootstrap (correct)``: lucidrl as it is;
* ``truncation as termination``: the env reports the cut as a terminal state, as code written for
  the old Gym API's single ``done`` did, so the value after step 200 is taken to be 0;
* ``as termination, time in obs``: the same, with t/200 added to the observation (Pardo et al.
  2018, "Time Limits in Reinforcement Learning"): the cut becomes part of a task the critic can see.

Each at γ = 0.9 (lucidrl's Pendulum preset, the zoo's value: a horizon of ~10 steps) and γ = 0.99
(~100 steps), 300k env steps, every other hyperparameter from the preset. The final return is the
undiscounted return of 10 deterministic 200-step episodes, the same measure for every variant.

    python experiments/truncation.py            # 5 seeds, 8 min one run at a time (--jobs 1) on an idle 2-core machine
"""

from __future__ import annotations

from pathlib import Path

from _common import budget, parse_args

from lucidrl.compare import Variant, compare_variants

ENV = "Pendulum-v1"
ARMS = [
    ("bootstrap (correct)", ""),
    ("truncation as termination", "env_wrappers:truncation_as_termination"),
    ("as termination, time in obs", "env_wrappers:time_aware_truncation_as_termination"),
]


def variants(gamma: float) -> list[Variant]:
    return [Variant(label, "ppo", {"gamma": gamma}, wrapper) for label, wrapper in ARMS]


if __name__ == "__main__":
    args = parse_args("truncation", __doc__.splitlines()[0])
    for gamma in (0.9, 0.99):
        out = Path(args.out) / f"gamma_{gamma}"
        paths = compare_variants(
            variants(gamma),
            ENV,
            seeds=args.seeds,
            timesteps=budget(args, 300_000, 8_192),
            out=out,
            n_jobs=args.jobs,
            force=args.force,
        )
        print(f"## γ = {gamma}\n")
        print(paths["table"].read_text())
        print("wrote " + ", ".join(str(p) for p in paths.values()))
