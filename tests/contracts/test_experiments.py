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
    "ppo_details": [
        "learning_curves.png",
        "final_returns.png",
        "results.md",
        "curves_diag_explained_variance.png",
        "curves_diag_grad_norm.png",
        "curves_diag_kl_after_update.png",
    ],
    "parallel_envs": [
        "same_batch/learning_curves.png",
        "same_batch/learning_curves_wall_time.png",
        "same_batch/results.md",
        "more_envs/final_returns.png",
        "more_envs/learning_curves_wall_time.png",
        "more_envs/results.md",
    ],
    "surrogate": ["surrogate.png", "surrogate.md", "surrogate.json"],
    "bellman": ["values.png", "results.md", "results.json"],
    "pg_vs_cross_entropy": [
        "learning_curves.png",
        "results.md",
        "pg_vs_bc.png",
        "bc_vs_pg.md",
        "bc_vs_pg.json",
        "identity.json",
    ],
    "vpg_vs_trpo": [
        "learning_curves.png",
        "results.md",
        "kl_per_update.png",
        "step_norm.png",
        "surrogate_gain.png",
        "update_stats.md",
        "update_stats.json",
    ],
    "replay": [
        "learning_curves.png",
        "results.md",
        "learning_curves_replay.png",
        "learning_curves_updates.png",
        "q_values.png",
        "td_loss.png",
        "diagnostics.md",
        "diagnostics.json",
    ],
    "a2c_vs_a3c": [
        "learning_curves.png",
        "results.md",
        "learning_curves_wall.png",
        "staleness.png",
        "staleness.md",
        "staleness.json",
    ],
    "activations": [
        "ppo_cartpole/learning_curves.png",
        "ppo_cartpole/grad_norm.png",
        "ppo_cartpole/units.png",
        "dqn_cartpole/results.md",
        "dqn_cartpole/units.png",
        "units.md",
        "units.json",
    ],
    "discount": [
        "limit_100/learning_curves.png",
        "limit_500/results.md",
        "returns_to_go.png",
        "horizon.png",
        "discount.md",
        "discount.json",
    ],
    "exploration": [
        "summary.md",
        "summary.json",
        "acrobot_a2c/learning_curves.png",
        "acrobot_a2c/curves_diag_entropy.png",
        "mountaincar_ppo/curves_diag_entropy.png",
        "cartpole_dqn/curves_train_exploration_rate.png",
        "pendulum_ppo/curves_diag_entropy.png",
        "pendulum_ppo/final_returns.png",
    ],
    "discretisation": [
        "learning_curves.png",
        "final_returns.png",
        "results.md",
        "learning_curves_with_dqn.png",
        "dqn/results.md",
        "tables.md",
        "tables.json",
    ],
    "llm_rl": ["accuracy.png", "reward_model.png", "kl.png", "results.md", "results.json"],
    "double_q": ["left_from_a.png", "q_a_left.png", "results.md", "results.json"],
    "gae_lambda": [
        "learning_curves.png",
        "results.md",
        "bias_variance.png",
        "gradient_statistics.md",
        "gradient_statistics.json",
    ],
    "seeds": [
        "learning_curves.png",
        "results.md",
        "seeds.md",
        "seeds.json",
        "spread.png",
        "two_groups_of_five.png",
        "power.png",
    ],
    "shared_trunk": [
        "learning_curves.png",
        "final_returns.png",
        "results.md",
        "explained_variance.png",
        "grad_shares.png",
        "grad_shares.md",
        "grad_shares.json",
    ],
}
# their results.md / results.json are exact computations or their own runs, not compare_variants' runs
NOT_COMPARE = {"bellman", "llm_rl", "double_q"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_experiment_script_runs(name, tmp_path):
    out = tmp_path / name
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / f"{name}.py"), "--quick", "--out", str(out), "--jobs", "2"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
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
    if name == "double_q":  # one curve point per episode, shares in [0, 1]; every method reported
        result = json.loads((out / "results.json").read_text())
        for part, names in (("tabular", ["Q-learning", "Double Q-learning"]), ("dqn", ["DQN", "Double DQN"])):
            assert list(result[part]["summary"]) == names
            for curve in result[part]["left_curve"].values():
                assert curve and all(0.0 <= v <= 1.0 for v in curve)
            assert all(f"| {n} |" in (out / "results.md").read_text() for n in names)
        assert len(result["tabular"]["left_curve"]["Q-learning"]) == result["settings"]["episodes"]
    if name == "discretisation":  # a table's rows are the grid's cells; what was updated and visited is counted
        summary = json.loads((out / "tables.json").read_text())
        assert len(summary) == 8 and "tables" not in summary["DQN (256x256 MLP)"]
        for label, row in summary.items():
            assert len(row["final_eval"]) == 2 and f"| {label} |" in (out / "tables.md").read_text()
        cells = {"angle only 1x1x12x1": 12, "coarse 1x3x6x6": 108, "fine 1x12x24x24": 6912}
        for label, n in cells.items():
            for t in summary[label]["tables"]:
                assert t["rows"] == n and 0 < t["rows_updated"] <= n
                assert 0 <= t["eval_steps_unlearned"] <= t["eval_steps"]
    if name == "gae_lambda":  # every λ measured on the same batches; λ = 1 is G_t − V(s), the true gradient's Ψ
        snapshots = json.loads((out / "gradient_statistics.json").read_text())
        assert len(snapshots) == 2
        for stats in snapshots.values():
            assert len(stats["psi"]) == 8 and all(s["relative_variance"] >= 0.0 for s in stats["psi"].values())
            assert all(-1.0 <= s["mean_cosine_to_reference"] <= 1.0 for s in stats["psi"].values())
    if name == "seeds":  # 2 runs a variant: one simulated A/B study size, rates in [0, 1]
        result = json.loads((out / "seeds.json").read_text())
        (row,) = result["rows"]
        assert row["n"] == 2 and 0.0 <= row["aa"]["significant"] <= 1.0 and result["pool"]["A"]["runs"] == 2
        rates = [v for s in ("mean", "median", "IQM") for v in row["ab"][s].values()] + [row["ab"]["welch_b_better"]]
        assert all(0.0 <= v <= 1.0 for v in rates) and 0.0 <= row["ci_mean"]["coverage"] <= 1.0
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
    if name == "shared_trunk":  # at the first update (same seed, same weights) c_v scales the value gradient exactly
        shares = json.loads((out / "grad_shares.json").read_text())
        assert set(shares) == {"PPO, shared, vf_coef 0.5", "PPO, shared, vf_coef 0.05", "A2C, shared"}
        for a, b in zip(
            shares["PPO, shared, vf_coef 0.5"]["first_update"], shares["PPO, shared, vf_coef 0.05"]["first_update"]
        ):
            assert a[0] == pytest.approx(b[0], rel=1e-6) and a[1] == pytest.approx(10 * b[1], rel=1e-5) and a[1] > 0
        assert all(s["updates"] > 0 and len(s["ratio_per_seed_median"]) == 2 for s in shares.values())
    if name == "llm_rl":  # 3 methods x 2 seeds, a point per eval; at update 0 every method is the same SFT model
        result = json.loads((out / "results.json").read_text())
        methods = ["ppo_rlhf", "ppo_verifier", "grpo"]
        assert list(result["labels"]) == methods and len(result["runs"]) == 2
        for run in result["runs"]:
            points = run["updates"]
            assert points == list(range(0, result["budget"]["updates"] + 1, result["budget"]["eval_every"]))
            rm = run["reward_model"]
            assert (
                rm["comparisons"] > 0 and 0 <= rm["heldout_pair_accuracy"] <= 1 and 0 <= rm["train_pair_accuracy"] <= 1
            )
            for m in methods:
                curve = run[m]
                assert all(
                    len(curve[k]) == len(points) for k in ("greedy_accuracy", "sampled_accuracy", "rm_score", "kl")
                )
                assert all(0 <= a <= 1 for a in curve["greedy_accuracy"] + curve["sampled_accuracy"])
                assert abs(curve["kl"][0]) < 1e-6  # π = π_ref before the first update
                for k in ("greedy_accuracy", "sampled_accuracy", "rm_score"):
                    assert curve[k][0] == run["grpo"][k][0], (m, k)
            assert len(run["ppo_rlhf"]["train_rm_score"]) == result["budget"]["updates"]
        table = (out / "results.md").read_text()
        assert all(f"| {label} |" in table for label in result["labels"].values())
    if name == "activations":  # every run probed at init and trained: unit counts, fractions, tanh never dead
        units = json.loads((out / "units.json").read_text())
        assert len(units["runs"]["ppo"]) == 8 * 2 and len(units["runs"]["dqn"]) == 2 * 2
        for study, nets in (("ppo", {"actor": 128, "critic": 128}), ("dqn", {"q": 512})):
            for row in units["runs"][study]:
                for when in ("init", "trained"):
                    assert {k: v["units"] for k, v in row[when].items()} == nets
                    for v in row[when].values():
                        assert 0.0 <= v["dead"] <= v["zero_output_share"] <= 1.0 and 0.0 <= v["saturated"] <= 1.0
                        assert row["activation"] == "relu" or v["dead"] == 0.0  # tanh(z) = 0 needs z = 0 exactly
        assert {r["activation"] for r in units["runs"]["ppo"]} == {"tanh", "relu"}
        assert all(r["grad_norm_median"] is None or r["grad_norm_median"] > 0 for r in units["runs"]["ppo"])
    if name == "discount":  # E1 and E3 hold exactly; returns within each run's limit; one V per probe step
        result = json.loads((out / "discount.json").read_text())
        for g, e in result["equations"].items():
            assert e["e1_max_abs_diff"] < 1e-9 and e["e3_max_abs_diff"] < 1e-9 and e["G_last"] == 1.0
            assert abs(e["G0"] - (1 - float(g) ** 500) / (1 - float(g))) < 1e-9 and e["G0"] <= e["horizon"] + 1e-9
        runs = result["runs"]
        assert len(runs) == 2 * 4 * 2 and {r["limit"] for r in runs} == {100, 500}
        assert all(r["eval_mean"] <= r["limit"] and len(r["values"]) == r["probe_return"] <= 500 for r in runs)
        assert all((r["probe_end"] == "limit") == (r["probe_return"] == 500) for r in runs)
        assert {r["probe_end"] for r in runs} <= {"limit", "cart", "pole"}
    if name == "pg_vs_cross_entropy":  # the PG loss is the A-weighted cross-entropy: value and gradient
        ident = json.loads((out / "identity.json").read_text())
        for dtype, tol in (("float32", 1e-5), ("float64", 1e-12)):
            d = ident[dtype]
            assert d["value_abs_diff"] < tol and d["grad_rel_diff"] < tol and d["bc_value_abs_diff"] < tol
            assert d["logit_grad_by_hand_max_abs_diff"] < tol and d["grad_norm"] > 0
        bc = json.loads((out / "bc_vs_pg.json").read_text())["bc"]
        assert bc["sizes"] and all(len(v) == 2 for v in [*bc["sizes"].values(), *bc["curve"].values()])
    if name == "vpg_vs_trpo":  # per update, both measured alike; TRPO's accepted steps keep KL <= δ, rejected are 0
        stats = json.loads((out / "update_stats.json").read_text())
        labels = {r["label"] for r in json.loads((out / "results.json").read_text())}
        assert set(stats["variants"]) == labels and {v["algo"] for v in stats["variants"].values()} == {"vpg", "trpo"}
        for label, v in stats["variants"].items():
            assert len(v["runs"]) == 2 and f"| {label} |" in (out / "update_stats.md").read_text()
            for run in v["runs"]:
                n = len(run["kl"])
                assert n >= 2 and len(run["step_norm"]) == len(run["surrogate_gain"]) == len(run["returns"]) == n
                assert all(k >= 0 for k in run["kl"]) and all(x >= 0 for x in run["step_norm"])
                if v["algo"] == "vpg":  # an Adam step always moves π
                    assert all(k > 0 for k in run["kl"]) and all(x > 0 for x in run["step_norm"])
                else:
                    for kl, gain, ok in zip(run["kl"], run["surrogate_gain"], run["line_search_accepted"]):
                        assert (kl <= v["target_kl"] * (1 + 1e-6) and gain > 0) if ok else (kl == 0 and gain == 0)
            s = v["summary"]
            kls = [k for r in v["runs"] for k in r["kl"]]
            assert s["updates"] == len(kls) and min(kls) <= s["kl_median"] <= s["kl_max"]
            assert abs(s["kl_max"] - max(kls)) <= 1e-3 * s["kl_max"]  # the series are stored to 4 digits
            assert s["collapse_rate"] is None or 0 <= s["collapse_rate"] <= 1
    if name == "replay":  # the variants take the gradient steps their settings say; every logged Q is finite
        diag = json.loads((out / "diagnostics.json").read_text())
        assert set(diag) == {r["label"] for r in json.loads((out / "results.json").read_text())}
        steps = {label: {r["gradient_steps"] for r in rows} for label, rows in diag.items()}
        assert all(len(rows) == 2 and len(steps[label]) == 1 for label, rows in diag.items())
        preset, once = steps["replay 100k (preset)"].pop(), steps["online, each used once"].pop()
        assert preset % 128 == 0 and steps["replay 1k"] == {preset} and 0 < 32 * once <= preset
        assert len({steps[f"small rounds, lag {lag}"].pop() for lag in (8, 128, 1280)}) == 1
        assert all(abs(r["q_last"]) < 1e6 and r["q_max"] >= r["q_last"] for rows in diag.values() for r in rows)
    if name == "a2c_vs_a3c":  # A2C and one-worker A3C are never stale; lockstep A3C with K workers exactly K - 1
        stale = json.loads((out / "staleness.json").read_text())["runs"]
        assert set(stale) == {r["label"] for r in json.loads((out / "results.json").read_text())}
        for label in ("A2C, 4 envs", "A2C, 8 envs (preset)", "A3C, 1 worker"):
            assert all(r["staleness_max"] == 0 for r in stale[label])
        for k in (2, 4):
            assert all(
                r["staleness_max"] == k - 1 and 0 < r["staleness_mean"] <= k - 1
                for r in stale[f"lockstep A3C, {k} workers"]
            )
        assert all(r["staleness_mean"] > 0 for r in stale["A3C, 2 workers (preset)"])
        # 20 env steps a gradient for all but the 8-env A2C (40): the same number of updates
        updates = {label: {r["updates"] for r in rows} for label, rows in stale.items()}
        assert updates["A2C, 8 envs (preset)"] == {u // 2 for u in updates["A2C, 4 envs"]}
        assert all(updates[label] == updates["A2C, 4 envs"] for label in stale if label != "A2C, 8 envs (preset)")
        from lucidrl.logging import read_metrics  # one A3C worker of 4 envs is A2C with 4 envs: the same episodes

        for seed in (0, 1):
            curves = [
                {
                    m["time/total_timesteps"]: m["rollout/episode_return"]
                    for m in read_metrics(out / "runs" / f"{d}-s{seed}" / "metrics.csv")
                    if "rollout/episode_return" in m
                }
                for d in ("A2C_4_envs", "A3C_1_worker")
            ]
            common = sorted(set(curves[0]) & set(curves[1]))
            assert common and all(curves[0][t] == curves[1][t] for t in common)
    if name == "exploration":  # per part and variant, 2 seeds summarised from their own metrics.csv
        import math

        summary = json.loads((out / "summary.json").read_text())
        assert list(summary) == ["acrobot_a2c", "mountaincar_ppo", "cartpole_dqn", "pendulum_ppo"]
        for part, p in summary.items():
            labels = {r["label"] for r in json.loads((out / part / "results.json").read_text())}
            assert {v["label"] for v in p["variants"]} == labels
            assert [v[p["knob"]] for v in p["variants"]] == sorted(v[p["knob"]] for v in p["variants"])
            for v in p["variants"]:
                assert len(v["runs"]) == 2 and f"| {v['label']} | 2 |" in (out / "summary.md").read_text()
                for r in v["runs"]:  # a success comes before the threshold (above the floor); both within the budget
                    assert r["first_success"] is None or 0 < r["first_success"] <= p["timesteps"] + 256
                    if r["reached_threshold"] is not None and p["floor"] is not None:
                        assert r["first_success"] is not None and r["first_success"] <= r["reached_threshold"]
                    if p["algo"] == "dqn":
                        assert r["final_entropy"] is None and r["first_success"] is None
                    elif p["env"] == "Pendulum-v1":  # H = log σ + ½(1 + log 2π); log σ starts at log_std_init
                        const = 0.5 * (1 + math.log(2 * math.pi))
                        assert abs(r["initial_entropy"] - (v["log_std_init"] + const)) < 0.1
                        assert abs(math.log(r["final_sigma"]) + const - r["final_entropy"]) < 1e-9
                    else:  # 3 actions: H <= log 3, and the first update's policy is still near uniform
                        assert 0 <= r["final_entropy"] <= math.log(3) + 1e-6 and r["initial_entropy"] > 1.0


def test_truncation_wrappers_report_the_time_limit_as_a_termination():
    """The truncation experiment's bug, on purpose: step 200 of Pendulum says terminated, never truncated."""
    import gymnasium as gym

    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import env_wrappers
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    for wrap, obs_dim in (
        (env_wrappers.truncation_as_termination, 3),
        (env_wrappers.time_aware_truncation_as_termination, 4),
    ):
        env = wrap(gym.make("Pendulum-v1"))
        obs, _ = env.reset(seed=0)
        assert obs.shape == (obs_dim,)
        steps = [env.step(env.action_space.sample()) for _ in range(200)]
        assert [s[2:4] for s in steps] == [(False, False)] * 199 + [(True, False)]
        if obs_dim == 4:  # t / 200 rides along in the last entry: 0 at the reset, 1 at the cut
            assert obs[-1] == 0.0 and abs(steps[99][0][-1] - 0.5) < 1e-6 and abs(steps[-1][0][-1] - 1.0) < 1e-6


def test_the_seed_study_finds_the_textbook_rates_on_normal_scores():
    """experiments/seeds.py's simulated studies, on scores whose answers are known: two normal distributions
    half a standard deviation apart. Welch's test then raises false alarms in 5% of A/A studies, its power
    with 20 seeds a side is 0.34 (noncentral t), and the sample size for 80% power is 2 (1.96 + 0.84)² / 0.5²
    = 63 seeds a side."""
    import numpy as np
    from scipy import stats

    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import seeds
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    rng = np.random.default_rng(0)
    a, b = rng.normal(100.0, 50.0, 2000), rng.normal(125.0, 50.0, 2000)
    result = seeds.study(a, b, [5, 20], draws=4000, ci_draws=150)
    small, twenty = result["rows"]
    assert abs(result["seeds_for_80_percent_power"] - 62.8) < 8
    for row in (small, twenty):
        assert 0.03 < row["aa"]["significant"] < 0.07  # the test's nominal 5% false-alarm rate
        assert row["ab"]["welch_a_better"] < 0.01  # significant in the wrong direction: almost never
        # the percentile bootstrap of a mean is ±1.96 s √((n-1)/n) / √n: Student's t says it covers only
        # 2 F_t(1.96 √((n-1)/n); n-1) - 1 of the time (0.845 at n = 5, 0.929 at n = 20)
        expected = 2 * stats.t.cdf(1.96 * np.sqrt((row["n"] - 1) / row["n"]), row["n"] - 1) - 1
        assert abs(row["ci_mean"]["coverage"] - expected) < 0.07
    assert 0.28 < twenty["ab"]["welch_b_better"] < 0.41 and small["ab"]["welch_b_better"] < 0.2
    # the ranking by the mean is right with probability Φ(0.5 √(n/2)): 0.785 at n = 5, 0.943 at n = 20
    assert abs(small["ab"]["mean"]["b_above"] - 0.785) < 0.04 and abs(twenty["ab"]["mean"]["b_above"] - 0.943) < 0.02
