"""GRPO (lucidrl.algos.grpo) and the toy text tasks (lucidrl.envs.text): the math on hand-worked
numbers, the tokenizer, the rewards, the sampler's log-probs, save/load, and a small learning run."""

from __future__ import annotations

import math

import pytest
import torch

import lucidrl
from lucidrl import GRPO
from lucidrl.algos.grpo import group_advantages, grpo_loss, k3_kl
from lucidrl.envs.text import EOS, PAD, AdditionTask, SortTask, Tokenizer
from lucidrl.errors import ConfigError
from lucidrl.lm import make_policy


# --------------------------------------------------------------------------- advantages (E2)
def test_group_advantages_by_hand():
    # group 1: mean 1/2, population std 1/2 -> ±1; group 2: mean 3/4, std sqrt(3/16) = √3/4
    # -> (1 - 3/4)/(√3/4) = 1/√3 and (0 - 3/4)/(√3/4) = -√3; group 3: all equal -> 0
    rewards = torch.tensor([1.0, 0, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1])
    adv = group_advantages(rewards, 4, eps=1e-12)
    s3 = math.sqrt(3)
    expected = torch.tensor([1.0, -1, -1, 1, 1 / s3, 1 / s3, 1 / s3, -s3, 0, 0, 0, 0])
    torch.testing.assert_close(adv, expected, atol=1e-6, rtol=0)
    assert torch.all(group_advantages(rewards, 4, eps=1e-4).abs() <= expected.abs())  # eps only shrinks
    with pytest.raises(ConfigError):
        group_advantages(torch.ones(6), 4)


# --------------------------------------------------------------------------- loss (E1, E3, E4)
def test_grpo_loss_by_hand_with_clipping_and_masking():
    # completion 0 (Â = +1): ratios 1.5 -> clipped to 1.2, and 0.9 -> 0.9; mean over its 2 tokens 1.05
    # completion 1 (Â = -1): ratio 0.5 -> min(-0.5, -0.8) = -0.8; its 2nd token is padding
    # J = (1.05 - 0.8) / 2 = 0.125, loss = -J
    logp_old = torch.zeros(2, 2)
    logp = torch.log(torch.tensor([[1.5, 0.9], [0.5, 1.0]]))
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    adv = torch.tensor([1.0, -1.0])
    loss, m = grpo_loss(logp, logp_old, None, adv, mask, clip_range=0.2, beta=0.0)
    assert float(loss) == pytest.approx(-0.125, abs=1e-6)
    assert float(m["diag/clip_fraction"]) == pytest.approx(2 / 3)  # 1.5 and 0.5 are outside [0.8, 1.2]
    # whatever sits at the padding position (here a huge log-prob) changes nothing, not even to NaN
    logp_bad = logp.clone()
    logp_bad[1, 1] = 1e4
    loss_bad, _ = grpo_loss(logp_bad, logp_old, logp_old, adv, mask, clip_range=0.2, beta=0.5)
    loss_ref, _ = grpo_loss(logp, logp_old, logp_old, adv, mask, clip_range=0.2, beta=0.5)
    assert torch.isfinite(loss_bad) and float(loss_bad) == pytest.approx(float(loss_ref))


def test_k3_kl_estimator():
    # π_ref/π = 2: 2 - log 2 - 1
    assert float(k3_kl(torch.tensor(0.0), torch.tensor(math.log(2)))) == pytest.approx(1 - math.log(2))
    g = torch.Generator().manual_seed(0)
    logp, logp_ref = torch.randn(1000, generator=g), torch.randn(1000, generator=g)
    assert torch.all(k3_kl(logp, logp_ref) >= 0)
    assert torch.all(k3_kl(logp, logp) == 0)
    # unbiased: E_{x~π}[k3] = KL(π||π_ref) for two categoricals, by exact expectation
    p, q = torch.tensor([0.2, 0.5, 0.3]), torch.tensor([0.4, 0.4, 0.2])
    expected = (p * (p / q).log()).sum()
    torch.testing.assert_close((p * k3_kl(p.log(), q.log())).sum(), expected)


def test_kl_term_adds_beta_times_masked_mean():
    logp, logp_ref = torch.zeros(1, 3), torch.full((1, 3), math.log(2))
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    loss, _ = grpo_loss(logp, logp, logp_ref, torch.zeros(1), mask, clip_range=0.2, beta=0.1)
    assert float(loss) == pytest.approx(0.1 * (1 - math.log(2)))


def test_gradient_at_old_policy_is_the_advantage_weighted_logprob_gradient():
    g = torch.Generator().manual_seed(1)
    B, N, V = 6, 4, 5
    theta = torch.randn(B, N, V, generator=g, requires_grad=True)
    tokens = torch.randint(V, (B, N), generator=g)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]]).float()
    adv = group_advantages(torch.tensor([1.0, 0, 1, 0, 0, 1]), 3)
    logp = torch.log_softmax(theta, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    loss, _ = grpo_loss(logp, logp.detach(), None, adv, mask, clip_range=0.2, beta=0.0)
    (grad,) = torch.autograd.grad(loss, theta, retain_graph=True)
    pg = -((adv[:, None] * logp * mask).sum(1) / mask.sum(1)).mean()
    (expected,) = torch.autograd.grad(pg, theta)
    torch.testing.assert_close(grad, expected)


# --------------------------------------------------------------------------- tasks
def test_tokenizer_round_trip_and_eos():
    tok = Tokenizer()
    ids = tok.encode("12+35=", eos=True)
    assert ids[-1] == EOS and tok.decode(ids) == "12+35="
    assert tok.decode(tok.encode("47") + [EOS] + tok.encode("99")) == "47"  # stops at EOS
    batch = tok.encode_batch(["7", "123"], eos=True)
    assert batch.tolist()[0][2:] == [PAD, PAD] and tok.decode(batch[1]) == "123"
    with pytest.raises(ConfigError):
        tok.encode("1*2")


def test_a_sampled_completion_with_padding_before_its_end_scores_nothing():
    """PAD is in the vocabulary, so the policy can sample it; decode skips it, so only score (which GRPO's rollouts,
    lucidrl.lm.accuracy and experiments/llm_rl.py use) can tell ``4 PAD 7 EOS`` from ``4 7 EOS``."""
    task = AdditionTask(format_reward=0.1)
    four, seven = task.tokenizer.encode("47")
    assert task.score("12+35=", [four, seven, EOS, PAD]) == 1.0  # padding after the end is the sampler's
    assert task.score("12+35=", torch.tensor([four, seven, EOS, four])) == 1.0  # (and anything after EOS)
    assert task.tokenizer.decode([four, PAD, seven, EOS]) == "47"
    assert task.score("12+35=", [four, PAD, seven, EOS]) == 0.0  # not 1.0, nor the format reward
    assert task.score("12+35=", [four, seven, PAD, PAD]) == 0.0  # no EOS: the padding is inside
    assert task.score("12+35=", [four, four, EOS]) == 0.1


def test_max_new_tokens_beyond_what_the_task_needs_is_refused_with_the_limit():
    assert GRPO("addition", max_new_tokens=4).max_new_tokens == 4  # the task's own: 3 digits and EOS
    with pytest.raises(ConfigError, match=r"max_new_tokens=5 is more than task 'addition' needs: at most 4"):
        GRPO("addition", max_new_tokens=5)


def test_rewards_and_splits():
    task = AdditionTask()
    assert task.reward("12+35=", "47") == 1.0
    assert task.reward("99+99=", "198") == 1.0 and task.reward("00+07=", "7") == 1.0
    for wrong in ("48", "047", "", "4"):
        assert task.reward("12+35=", wrong) == 0.0
    assert AdditionTask(format_reward=0.1).reward("12+35=", "48") == 0.1
    assert AdditionTask(format_reward=0.1).reward("12+35=", "4+") == 0.0
    sort = SortTask()
    assert sort.reward("3142=", "1234") == 1.0 and sort.reward("3142=", "1243") == 0.0
    train, held = set(task.splits["train"]), set(task.splits["heldout"])
    assert not train & held and len(train) + len(held) == 10_000 and len(held) == 2000
    draws = task.sample_prompts(50, torch.Generator().manual_seed(3), "heldout")
    assert set(draws) <= held and draws == task.sample_prompts(50, torch.Generator().manual_seed(3), "heldout")


def test_sampled_logprobs_match_the_training_forward():
    torch.manual_seed(0)
    task = AdditionTask()
    policy = make_policy(task)
    q = task.encode_prompts(task.sample_prompts(32, torch.Generator().manual_seed(0)))
    o, logp, mask = policy.sample(q, task.max_new_tokens, torch.Generator().manual_seed(1), temperature=1.0)
    for row, m in zip(o, mask):  # 1 up to and including the first EOS, PAD after it
        n = int(m.sum())
        assert torch.all(m[:n] == 1) and torch.all(row[n:] == PAD)
        assert n == o.shape[1] or row[n - 1] == EOS
    with torch.no_grad():
        torch.testing.assert_close(policy.logprobs(q, o) * mask, logp, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- the class
def test_save_load_round_trip_continues_identically(tmp_path):
    model = GRPO("addition", seed=3, n_prompts=4, group_size=4, d_model=32, n_layers=1)
    model.learn(2)
    model.save(tmp_path / "m")
    loaded = GRPO.load(tmp_path / "m")
    assert loaded.n_updates == 2 and loaded.config == model.config
    assert type(lucidrl.load(tmp_path / "m")) is GRPO  # lucidrl.load reads every lucidrl checkpoint
    model.learn(1)
    loaded.learn(1)
    for (k, a), b in zip(model.policy.state_dict().items(), loaded.policy.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    with pytest.raises(ConfigError):
        GRPO("addition", group_size=1)


def test_grpo_raises_heldout_accuracy_above_the_warm_start():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the figures below were measured so (the sampled completions may differ by threads)
    try:
        model = GRPO("addition", seed=0).warm_start()
        before = model.evaluate(300)
        model.learn(140)
        after = model.evaluate(300)
    finally:
        torch.set_num_threads(threads)
    assert 0.1 < before < 0.4
    print(f"held-out accuracy: warm start {before:.3f}, after GRPO {after:.3f}")
    assert after >= before + 0.08, (before, after)


def test_the_guides_table_names_functions_that_run():
    """Every ``lucidrl.…`` name in section 4 of docs/algorithms/grpo.md exists and runs in a small GRPO run."""
    import importlib
    import inspect
    import re
    import sys
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "algorithms" / "grpo.md").read_text()
    section = re.search(r"^## 4\. From equations to code\n(.*?)(?=^## )", text, re.S | re.M).group(1)
    names = sorted(set(re.findall(r"`(lucidrl\.[A-Za-z0-9_.]+)`", section)))
    assert len(names) >= 10
    wanted = {}
    for name in names:
        parts = name.split(".")
        obj = importlib.import_module("lucidrl")
        for i, attr in enumerate(parts[1:], start=2):  # submodules are imported as the path walks into them
            obj = getattr(obj, attr, None) or importlib.import_module(".".join(parts[:i]))
        assert obj is not None, name
        if not inspect.isclass(obj):
            wanted[name] = inspect.unwrap(obj).__code__
    called = set()
    sys.setprofile(lambda frame, event, arg: called.add(frame.f_code) if event == "call" else None)
    try:
        model = GRPO("addition", seed=0, n_prompts=2, group_size=2, d_model=16, n_layers=1)
        model.warm_start(n_examples=8, steps=1)
        model.learn(1)
        model.evaluate(4)
    finally:
        sys.setprofile(None)
    assert not [n for n, code in wanted.items() if code not in called]


def test_the_warm_start_gives_the_same_model_whatever_torchs_thread_count():
    """torch_threads='auto' holds torch at one thread in warm_start, learn and evaluate (restored after), so the
    figures do not depend on the machine's cores; on 2 threads a plain warm start ends elsewhere (~6e-4 here)."""
    before = torch.get_num_threads()
    try:
        weights = []
        for outer in (1, 2):
            torch.set_num_threads(outer)
            model = GRPO("addition", seed=0).warm_start(n_examples=300, steps=30)
            assert torch.get_num_threads() == outer  # restored
            weights.append(torch.cat([p.detach().flatten() for p in model.policy.parameters()]))
        assert torch.equal(weights[0], weights[1])
    finally:
        torch.set_num_threads(before)
    for bad in (0, "all", 1.5):
        with pytest.raises(ConfigError, match="torch_threads must be 'auto' or an integer >= 1"):
            GRPO("addition", torch_threads=bad)
