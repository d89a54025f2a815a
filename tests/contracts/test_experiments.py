"""The experiment scripts of ``experiments/`` run end to end (``--quick``: tiny budgets, 2 seeds).

These check that the scripts work and write what ``docs/experiments.md`` shows; what the
experiments find is measured at full budget and recorded there, not here.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {
    "target_network": ["learning_curves.png", "final_returns.png", "results.md", "q_values.png"],
    "truncation": ["gamma_0.9/learning_curves.png", "gamma_0.99/final_returns.png", "gamma_0.99/results.md"],
    "baseline": ["learning_curves.png", "results.md", "gradient_cosines.png", "gradient_statistics.md"],
    "ppo_clip": ["learning_curves.png", "results.md", "kl_after_update.png"],
    "surrogate": ["surrogate.png", "surrogate.md", "surrogate.json"],
    "bellman": ["values.png", "results.md", "results.json"],
    "pg_vs_cross_entropy": ["learning_curves.png", "results.md", "pg_vs_bc.png", "bc_vs_pg.md", "bc_vs_pg.json",
                            "identity.json"],
}
NOT_COMPARE = {"bellman"}  # its results.md / results.json are exact computations, not compare_variants' runs


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_experiment_script_runs(name, tmp_path):
    out = tmp_path / name
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / f"{name}.py"), "--quick", "--out", str(out),
                           "--jobs", "2"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rel in EXPECTED[name]:
        assert (out / rel).is_file() and (out / rel).stat().st_size > 0, rel
    tables = [out / "results.md"] if (out / "results.md").is_file() else sorted(out.glob("*/results.md"))
    tables = [] if name in NOT_COMPARE else tables
    for table in tables:  # every variant was trained on 2 seeds and reported under its label
        results = json.loads((table.parent / "results.json").read_text())
        labels = {r["label"] for r in results}
        assert len(results) == 2 * len(labels) and all(f"| {label} | 2 |" in table.read_text() for label in labels)
    if name == "surrogate":  # at θ_old both objectives and the true change are 0; the KL grows along the step
        for part in json.loads((out / "surrogate.json").read_text()).values():
            rows = part["rows"]
            assert rows[0]["scale"] == 0 and all(abs(rows[0][k]) < 1e-6 for k in ("true", "ratio", "log", "kl"))
            assert all(a["kl"] < b["kl"] for a, b in zip(rows, rows[1:]))
    if name == "baseline":
        stats = json.loads((out / "gradient_statistics.json").read_text())
        for s in stats["psi"].values():
            assert -1.0 <= s["cosine_mean"] <= 1.0 and s["relative_variance"] >= 0.0
    if name == "bellman":  # T^π's residual is ~0 for every policy, T*'s only for π*; 2 seeds of MC and Q-learning
        result = json.loads((out / "results.json").read_text())
        rows = result["policies"]
        assert len(rows) == 3 and all(r["expectation_residual"] < 1e-10 and len(r["mc_returns"]) == 2 for r in rows)
        assert [r["optimality_residual"] < 1e-10 for r in rows] == [False, False, True]
        assert abs(rows[2]["V_s0"] - result["V_star"][0]) < 1e-9 and len(result["q_learning"]) == 2
        assert all(f"| {r['policy']} |" in (out / "results.md").read_text() for r in rows)
    if name == "pg_vs_cross_entropy":  # the PG loss is the A-weighted cross-entropy: value and gradient
        ident = json.loads((out / "identity.json").read_text())
        for dtype, tol in (("float32", 1e-5), ("float64", 1e-12)):
            d = ident[dtype]
            assert d["value_abs_diff"] < tol and d["grad_rel_diff"] < tol and d["bc_value_abs_diff"] < tol
            assert d["logit_grad_by_hand_max_abs_diff"] < tol and d["grad_norm"] > 0
        bc = json.loads((out / "bc_vs_pg.json").read_text())["bc"]
        assert bc["sizes"] and all(len(v) == 2 for v in [*bc["sizes"].values(), *bc["curve"].values()])


def test_truncation_wrappers_report_the_time_limit_as_a_termination():
    """The truncation experiment's bug, on purpose: step 200 of Pendulum says terminated, never truncated."""
    import gymnasium as gym

    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import env_wrappers
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    for wrap, obs_dim in ((env_wrappers.truncation_as_termination, 3),
                          (env_wrappers.time_aware_truncation_as_termination, 4)):
        env = wrap(gym.make("Pendulum-v1"))
        obs, _ = env.reset(seed=0)
        assert obs.shape == (obs_dim,)
        steps = [env.step(env.action_space.sample()) for _ in range(200)]
        assert [s[2:4] for s in steps] == [(False, False)] * 199 + [(True, False)]
        if obs_dim == 4:  # t / 200 rides along in the last entry: 0 at the reset, 1 at the cut
            assert obs[-1] == 0.0 and abs(steps[99][0][-1] - 0.5) < 1e-6 and abs(steps[-1][0][-1] - 1.0) < 1e-6
