"""The public API: construction, presets, predict, evaluate, save/load, resume, determinism."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import lucidrl
from lucidrl.config import LinearSchedule

SMALL = dict(n_envs=2, n_steps=64, batch_size=64, n_epochs=2, seed=0, verbose=0)


def small_ppo(env="CartPole-v1", **kw):
    return lucidrl.PPO(env, preset=False, **{**SMALL, **kw})


def test_preset_is_the_start_and_explicit_arguments_win():
    m = lucidrl.PPO("CartPole-v1", seed=1, n_epochs=5, verbose=0)
    assert m.preset_name == "CartPole-v1" and "rl-baselines3-zoo" in m.preset_source
    c = m.config
    assert (c.n_envs, c.n_steps, c.batch_size, c.gae_lambda, c.gamma, c.ent_coef) == (8, 32, 256, 0.8, 0.98, 0.0)
    assert c.n_epochs == 5 and c.seed == 1  # the user's values on top of the preset
    assert c.learning_rate == lucidrl.linear(1e-3) and c.clip_range == LinearSchedule(0.2)
    assert any("preset" in n and "n_epochs=5" in n for n in m.notes)  # said in the log
    plain = lucidrl.PPO("CartPole-v1", preset=False, verbose=0)
    assert (plain.config.n_envs, plain.config.n_steps, plain.config.batch_size) == (1, 2048, 64)


def test_env_forms_are_all_accepted():
    assert small_ppo("CartPole-v1").env.num_envs == 2
    assert small_ppo(lambda: gym.make("CartPole-v1")).env.num_envs == 2
    assert small_ppo(gym.make("CartPole-v1"), n_envs=1).env.num_envs == 1
    venv = gym.make_vec("CartPole-v1", 3, vectorization_mode="sync")
    m = small_ppo(venv)
    assert m.env is venv and m.config.n_envs == 3
    m.learn(384)
    assert m.num_timesteps == 384


def test_predict_single_and_batch_like_sb3():
    m = small_ppo()
    obs, _ = gym.make("CartPole-v1").reset(seed=0)
    action, state = m.predict(obs, deterministic=True)
    assert state is None and np.shape(action) == () and m.action_space.contains(int(action))
    actions, _ = m.predict(np.stack([obs] * 5), deterministic=True)
    assert actions.shape == (5,) and actions.dtype == np.int64
    assert (actions == action).all()
    with pytest.raises(lucidrl.EnvError, match=r"shape \(3,\)"):
        m.predict(np.zeros(3))


def test_sb3_evaluate_policy_runs_on_a_lucidrl_model():
    evaluation = pytest.importorskip("stable_baselines3.common.evaluation")
    m = small_ppo()
    mean, std = evaluation.evaluate_policy(m, gym.make("CartPole-v1"), n_eval_episodes=3, deterministic=True)
    assert mean > 0


def test_evaluate_returns_mean_and_std_and_is_repeatable():
    m = small_ppo()
    a = lucidrl.evaluate(m, "CartPole-v1", n_episodes=4)
    b = lucidrl.evaluate(m, "CartPole-v1", n_episodes=4)
    assert a == b and len(a) == 2
    mean, std, returns = lucidrl.evaluate(m, n_episodes=3, return_episode_returns=True)
    assert len(returns) == 3 and mean == pytest.approx(np.mean(returns))


def test_save_load_round_trip_gives_identical_actions_and_state(tmp_path):
    m = small_ppo(learning_rate=lucidrl.linear(1e-3), variant="kl_penalty")
    m.learn(512)
    m.beta = 0.25
    m.save(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "state.json", "weights.safetensors"]
    m2 = lucidrl.load(tmp_path / "ckpt")
    assert type(m2) is lucidrl.PPO and m2.num_timesteps == 512 and m2.n_updates == m.n_updates and m2.beta == 0.25
    assert m2.config == m.config
    for p, q in zip(m.agent.state_dict().values(), m2.agent.state_dict().values()):
        assert torch.equal(p, q)
    obs = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    assert (m.predict(obs, deterministic=True)[0] == m2.predict(obs, deterministic=True)[0]).all()
    assert torch.equal(m.generator.get_state(), m2.generator.get_state())  # the RNG is restored
    assert (m.predict(obs)[0] == m2.predict(obs)[0]).all()  # so stochastic actions match too
    s1, s2 = m.optimizer.state_dict(), m2.optimizer.state_dict()
    for k in s1["state"]:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(s1["state"][k][name], s2["state"][k][name])
    assert lucidrl.PPO.load(tmp_path / "ckpt").num_timesteps == 512


def test_resume_continues_the_step_counter_and_the_schedules(tmp_path):
    a = small_ppo(learning_rate=lucidrl.linear(1e-3))
    a.learn(256)
    a.save(tmp_path / "mid")
    a.learn(256, reset_num_timesteps=False)
    b = lucidrl.load(tmp_path / "mid", env="CartPole-v1")
    assert b.num_timesteps == 256
    b.learn(256, reset_num_timesteps=False)
    assert b.num_timesteps == 512 and a.num_timesteps == 512
    # progress (1 -> 0) continues too: the linear learning rate is at its second half in both
    assert b.optimizer.param_groups[0]["lr"] == pytest.approx(a.optimizer.param_groups[0]["lr"])


def test_same_seed_same_training():
    a, b = small_ppo(), small_ppo()
    a.learn(512)
    b.learn(512)
    for p, q in zip(a.agent.parameters(), b.agent.parameters()):
        assert torch.equal(p, q)
    c = small_ppo(seed=1)
    c.learn(512)
    assert not all(torch.equal(p, q) for p, q in zip(a.agent.parameters(), c.agent.parameters()))


def test_run_dir_gets_metrics_tensorboard_model_and_periodic_checkpoints(tmp_path):
    m = small_ppo(run_dir=tmp_path / "run")
    m.learn(512, checkpoint_freq=256)
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert "metrics.csv" in files and "model" in files and any(f.startswith("events.out.tfevents") for f in files)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step_000000256", "step_000000512"]
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in [
        "time/total_timesteps",
        "loss/policy",
        "loss/value",
        "loss/entropy",
        "diag/approx_kl",
        "diag/clip_fraction",
        "diag/explained_variance",
        "diag/grad_norm",
        "time/steps_per_second",
    ]:
        assert name in header
    assert lucidrl.load(tmp_path / "run").num_timesteps == 512  # a run directory loads its model/


def test_callback_can_stop_training():
    m = small_ppo()
    seen = []
    m.learn(10_000, callback=lambda model, metrics: seen.append(metrics["loss/value"]) or len(seen) < 2)
    assert len(seen) == 2 and m.num_timesteps == 256


def test_custom_schedule_is_used_and_saved_as_its_start_value(tmp_path):
    m = small_ppo(learning_rate=lambda p: 1e-3 * p**2)
    m.learn(256)
    m.save(tmp_path / "c")
    with pytest.warns(UserWarning, match="custom schedule"):
        m2 = lucidrl.load(tmp_path / "c")
    assert m2.config.learning_rate == pytest.approx(1e-3)


def test_discrete_observations_are_one_hot_encoded():
    m = small_ppo("FrozenLake-v1", n_steps=32, batch_size=32)
    m.learn(128)
    action, _ = m.predict(0)
    assert m.action_space.contains(int(action))
    assert m.predict(np.array([0, 5, 15]))[0].shape == (3,)


def test_options_shared_trunk_value_clipping_and_async_envs_train():
    m = small_ppo(
        shared_trunk=True,
        clip_range_vf=0.2,
        activation="relu",
        ortho_init=False,
        vectorization="async",
        max_grad_norm=None,
    )
    assert isinstance(m.env, gym.vector.AsyncVectorEnv) and hasattr(m.agent, "trunk")
    rows = []
    m.learn(256, callback=lambda model, metrics: rows.append(metrics))
    assert all(np.isfinite(r["loss/value"]) and np.isfinite(r["diag/grad_norm"]) for r in rows)
    m.env.close()


def test_target_kl_stops_the_epochs_early():
    rows = []
    m = small_ppo(n_epochs=50, target_kl=1e-4, learning_rate=3e-3)
    m.learn(512, callback=lambda model, metrics: rows.append(metrics))
    stopped = [r for r in rows if r["train/epochs"] < 50]
    assert stopped and all(r["train/gradient_steps"] < 100 for r in stopped)  # 50 epochs x 2 minibatches


def test_kl_penalty_logs_beta_and_adapts_it():
    rows = []
    m = small_ppo(variant="kl_penalty", d_targ=1e-6, beta_init=1.0, n_epochs=4)
    m.learn(512, callback=lambda model, metrics: rows.append(metrics))
    assert [r["train/beta"] for r in rows][:2] == [1.0, 2.0]  # KL far above d_targ: β doubles
    assert "train/clip_range" not in rows[0] and "diag/kl_after_update" in rows[0]


def test_optimizer_state_follows_the_parameter_layout_across_versions(tmp_path):
    """The optimiser's state is torch's own, one entry per named parameter. A checkpoint of an older lucidrl,
    which kept the weights and the optimiser's moments in one flat tensor and recorded each weight's place in
    it (a "layout"), is converted: each weight's slice of the moments becomes its own state, exactly. One whose
    layout cannot be matched loads its weights, and the moments start afresh, with a note."""
    import json

    import torch
    from safetensors.torch import load_file, save_file

    model = lucidrl.PPO("CartPole-v1", seed=0, verbose=0, n_envs=2, n_steps=64, batch_size=64, n_epochs=1)
    model.learn(256)
    path = model.save(tmp_path / "m")
    loaded = lucidrl.load(path)
    assert loaded.notes == []
    saved = model.optimizer.state_dict()["state"]
    for i, st in loaded.optimizer.state_dict()["state"].items():
        assert all(torch.equal(v, saved[i][k]) for k, v in st.items())
    state = json.loads((path / "state.json").read_text())
    entry = state["optimizers"]["optimizer"]
    names = entry["parameters"]  # the parameters by name, in the optimiser's order
    assert names == [f"agent/{n}" for n, _ in model.agent.named_parameters()]
    assert names[0] == "agent/actor.0.weight" and entry["param_groups"][0]["params"] == list(range(len(names)))

    # an older lucidrl's checkpoint of the same model, made by hand: one flat tensor per moment, packed in
    # another order (the critic's weights first), with the layout [group, index, name, offset, numel]
    tensors = load_file(str(path / "weights.safetensors"))
    per_param = {k: tensors.pop(k) for k in [k for k in tensors if k.startswith("optim/optimizer/state/")]}
    order = sorted(range(len(names)), key=lambda j: not names[j].startswith("agent/critic"))
    assert order != list(range(len(names)))
    layout, offset = [], 0
    for j in order:
        n = per_param[f"optim/optimizer/state/{j}/exp_avg"].numel()
        layout.append([0, 0, names[j], offset, n])
        offset += n
    for k in ("exp_avg", "exp_avg_sq"):
        tensors[f"optim/optimizer/state/0/{k}"] = torch.cat(
            [per_param[f"optim/optimizer/state/{j}/{k}"].reshape(-1) for j in order]
        )
    tensors["optim/optimizer/state/0/step"] = per_param["optim/optimizer/state/0/step"]
    save_file(tensors, str(path / "weights.safetensors"))
    del entry["parameters"]
    entry.update(layout=layout, param_groups=[{**entry["param_groups"][0], "params": [0]}], scalars={})
    (path / "state.json").write_text(json.dumps(state))

    old = lucidrl.load(path)
    assert any("converted from an older lucidrl's flat layout" in n for n in old.notes)
    converted = old.optimizer.state_dict()["state"]
    assert converted.keys() == saved.keys()
    for i in saved:  # every parameter took its own moments back, exactly
        assert converted[i].keys() == saved[i].keys()
        for k, v in saved[i].items():
            assert torch.equal(converted[i][k], v), (names[i], k)
    assert old.optimizer.param_groups[0]["lr"] == model.optimizer.param_groups[0]["lr"]
    old.learn(128, reset_num_timesteps=False)  # and training continues from them
    assert float(old.optimizer.state_dict()["state"][0]["step"]) == float(saved[0]["step"]) + 2

    layout[0][2] = "agent/actor.0.renamed"  # a layout that cannot be matched
    (path / "state.json").write_text(json.dumps(state))
    unmatched = lucidrl.load(path)
    assert any("state not restored" in n for n in unmatched.notes)
    assert unmatched.optimizer.state_dict()["state"] == {}
    for (k, x), y in zip(model.agent.state_dict().items(), unmatched.agent.state_dict().values()):
        torch.testing.assert_close(x, y, msg=k)


def test_logger_keeps_every_row_in_csv_and_throttles_tensorboard_keeping_the_last(tmp_path, monkeypatch):
    """metrics.csv gets every row; TensorBoard at most one row per TB_MIN_INTERVAL_S, and always the last one."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import lucidrl.logging as lg

    monkeypatch.setattr(lg, "TB_MIN_INTERVAL_S", 3600.0)  # only the first row is due, then the last at close
    logger = lg.Logger(tmp_path, verbose=0)
    logger.start(1000, 0, progress_bar=False)
    for i in range(1, 51):
        logger.record(i * 10, {"loss/value": float(i)})
    logger.close()
    rows = lg.read_metrics(tmp_path / "metrics.csv")
    assert [r["loss/value"] for r in rows] == [float(i) for i in range(1, 51)]
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    events = acc.Scalars("loss/value")
    assert [(e.step, e.value) for e in events] == [(10, 1.0), (500, 50.0)]


def test_a_learn_call_does_not_evaluate_the_configs_annotations_again(monkeypatch):
    """learn checks the whole config at its start (writes into model.config); typing.get_type_hints compiles every
    annotation string at each call (~0.7 ms, 35 a check: 24 ms per learn, which a loop of short learn calls, as
    the GPU solve benchmark's, paid every update). They are evaluated once per config class."""
    import typing

    model = lucidrl.PPO("CartPole-v1", n_envs=2, n_steps=8, batch_size=16, n_epochs=1, verbose=0, preset=False)
    model.learn(16)
    calls = []
    real = typing.get_type_hints
    monkeypatch.setattr(typing, "get_type_hints", lambda *a, **k: calls.append(a) or real(*a, **k))
    for _ in range(3):
        model.learn(16, reset_num_timesteps=False)
    model.config.ent_coef = 0.01  # a write, checked at the next learn
    model.learn(16, reset_num_timesteps=False)
    assert calls == [] and model.num_timesteps == 80
