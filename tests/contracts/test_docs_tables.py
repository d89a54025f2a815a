"""Each guide's equation-to-code table names the reference's functions, and they are what runs.

Every name in backticks in section "4. From equations to code" of ``docs/algorithms/*.md`` that
starts with ``lucidrl.`` must resolve to a function, method or class of the package; every such
function or method must be called while the algorithm trains for a few updates with
``backend="reference"`` (under each configuration the table's rows describe: PPO-Clip and
PPO-Penalty, DQN with and without Double DQN, ...). A table that names a function nothing runs
fails here.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path

import pytest

import lucidrl

DOCS = Path(__file__).resolve().parents[2] / "docs" / "algorithms"

# (guide, algorithm, the configurations that together exercise every row, env steps per run)
GUIDES = {
    "ppo.md": ("PPO", [{}, {"variant": "kl_penalty"}, {"clip_range_vf": 0.2, "target_kl": 0.5}], 256),
    "a2c.md": ("A2C", [{}, {"use_rms_prop": False, "normalize_advantage": True, "ent_coef": 0.01}], 160),
    "trpo.md": ("TRPO", [{}, {"variant": "npg"}], 256),
    "vpg.md": ("VPG", [{}, {"psi": "reward_to_go_baseline"}, {"psi": "total_return"}, {"psi": "reward_to_go"}], 256),
    "dqn.md": ("DQN", [{}, {"double_q": True, "tau": 0.5}], 300),
    "q_learning.md": (
        "QLearning",
        [{}, {"update": "sarsa"}, {"update": "expected_sarsa"}, {"update": "double_q_learning"}],
        400,
    ),
}
SMALL = {
    "PPO": dict(n_envs=2, n_steps=32, batch_size=32, n_epochs=2, net_arch=[8]),
    "A2C": dict(n_envs=2, n_steps=5, net_arch=[8]),
    "TRPO": dict(n_envs=2, n_steps=64, batch_size=64, net_arch=[8], n_critic_updates=1),
    "VPG": dict(n_envs=2, n_steps=64, net_arch=[8], n_critic_updates=2),
    "DQN": dict(
        learning_starts=100, batch_size=16, train_freq=50, gradient_steps=2, target_update_interval=50, net_arch=[8]
    ),
    "QLearning": dict(n_bins=[3]),
}


def table_names(guide: str) -> list[str]:
    text = (DOCS / guide).read_text()
    section = re.search(r"^## 4\. From equations to code\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, f"{guide} has no section '## 4. From equations to code'"
    names = re.findall(r"`(lucidrl\.[A-Za-z0-9_.]+)`", section.group(1))
    assert names, f"{guide}'s equation-to-code table names no lucidrl function"
    return sorted(set(names))


def resolve(name: str):
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(name)


def code_of(obj):
    obj = inspect.unwrap(obj)
    return getattr(obj, "__code__", None)


@pytest.mark.parametrize("guide", sorted(GUIDES))
def test_every_function_the_table_names_exists_and_runs_in_the_reference(guide):
    algo, configs, steps = GUIDES[guide]
    names = table_names(guide)
    objects = {name: resolve(name) for name in names}  # an AttributeError/ImportError names the stale entry
    wanted = {name: code_of(obj) for name, obj in objects.items() if not inspect.isclass(obj)}
    wanted = {k: v for k, v in wanted.items() if v is not None}
    called: set = set()

    def profile(frame, event, arg):
        if event == "call":
            called.add(frame.f_code)

    env = "FrozenLake-v1" if algo == "QLearning" else "CartPole-v1"
    sys.setprofile(profile)
    try:
        for config in configs:
            model = getattr(lucidrl, algo)(
                env, seed=0, verbose=0, preset=False, backend="reference", **SMALL[algo], **config
            )
            model.learn(steps)
            model.predict(model.observation_space.sample())
    finally:
        sys.setprofile(None)
    missing = sorted(name for name, code in wanted.items() if code not in called)
    assert not missing, f"{guide} names functions that no reference update runs: {missing}"


def test_no_figure_is_left_to_fill():
    """Every figure the docs quote was measured: no ``[[FIGURE: ...]]`` placeholder remains."""
    root = DOCS.parents[1]
    left = [
        str(p.relative_to(root))
        for p in [root / "README.md", *root.joinpath("docs").rglob("*.md")]
        if "[[FIGURE" in p.read_text()
    ]
    assert not left, f"placeholders left in {left}"
