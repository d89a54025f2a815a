"""VPG's policy-gradient estimators against the exact gradient of a small episodic MDP.

The MDP is small enough to enumerate every episode with its probability, so J(θ) = E[return]
and ∇J(θ) (by autograd through the enumeration) are exact. The estimators are built from the
library's own functions (``total_returns``, ``discounted_returns``) and ``policy_gradient_loss``.
"""

import pytest
import torch

from lucidrl.advantages import discounted_returns, total_returns
from lucidrl.algos.vpg import VPGConfig, policy_gradient_loss, psi_and_targets
from lucidrl.networks import CategoricalHead
from lucidrl.rollout import Rollout

S, A, H = 3, 2, 3  # states, actions, the longest episode (every episode ends by its third step)
F64 = torch.float64
# P[s, a] = (probabilities of next states 0, 1, 2, "end"), R[s, a] the reward
P = torch.tensor(
    [
        [[0.0, 0.7, 0.0, 0.3], [0.0, 0.0, 1.0, 0.0]],
        [[0.0, 0.0, 0.5, 0.5], [0.0, 0.4, 0.6, 0.0]],
        [[0.0, 0.0, 0.0, 1.0], [0.8, 0.0, 0.0, 0.2]],
    ],
    dtype=F64,
)
R = torch.tensor([[1.0, 0.0], [2.0, -1.0], [0.5, 3.0]], dtype=F64)
THETA = torch.tensor([[0.3, -0.2], [-0.5, 0.4], [0.1, 0.9]], dtype=F64)  # the tabular softmax policy's logits


def episodes():
    """Every episode from s_0 = 0 as (states, actions, rewards, probability of its transitions)."""
    out = []

    def walk(s, t, states, actions, p):
        for a in range(A):
            st, ac = states + [s], actions + [a]
            if t == H - 1:  # the third step ends every episode, wherever it would have gone
                out.append((st, ac, p))
                continue
            for nxt in range(4):
                q = float(P[s, a, nxt])
                if q > 0.0 and nxt == 3:
                    out.append((st, ac, p * q))
                elif q > 0.0:
                    walk(nxt, t + 1, st, ac, p * q)

    walk(0, 0, [], [], 1.0)
    return [(s, a, [float(R[x, y]) for x, y in zip(s, a)], p) for s, a, p in out]


EPISODES = episodes()


def policy(theta):
    return theta.softmax(-1)


def exact_J_and_grad(gamma=1.0):
    theta = THETA.clone().requires_grad_()
    pi = policy(theta)
    J = 0.0
    for s, a, r, p_env in EPISODES:
        p_pi = torch.stack([pi[x, y] for x, y in zip(s, a)]).prod()
        ret = sum(gamma**t * x for t, x in enumerate(r))
        J = J + p_env * p_pi * ret
    (grad,) = torch.autograd.grad(J, theta)
    return float(J.detach()), grad


def grad_log_pi(pi, s, a):
    """∇_θ log π(a|s) for the tabular softmax: row s is onehot(a) - π(·|s), other rows 0."""
    g = torch.zeros(S, A, dtype=F64)
    g[s] = -pi[s]
    g[s, a] += 1.0
    return g


def psi_of(kind, rewards, gamma, baseline=None, states=None):
    """Ψ_t of one whole episode from the library's estimators ([T, 1] tensors, terminated at the end)."""
    r = torch.tensor(rewards, dtype=F64)[:, None]
    term = torch.zeros_like(r, dtype=torch.bool)
    term[-1] = True
    trunc = torch.zeros_like(term)
    if kind == "total_return":
        return total_returns(r, term, trunc, gamma)[:, 0]
    g = discounted_returns(r, term, trunc, gamma)[:, 0]
    return g if baseline is None else g - baseline[states]


def exact_moments(kind, gamma=1.0, baseline=None, discount_weights=False):
    """E[ĝ] and E[|ĝ - E ĝ|²] of the estimator ĝ = Σ_t (γ^t) ∇log π(a_t|s_t) Ψ_t, by enumeration."""
    pi = policy(THETA)
    mean = torch.zeros(S, A, dtype=F64)
    second = 0.0
    for s, a, r, p_env in EPISODES:
        p = p_env * float(torch.stack([pi[x, y] for x, y in zip(s, a)]).prod())
        psi = psi_of(kind, r, gamma, baseline, torch.tensor(s))
        g = sum(
            (gamma**t if discount_weights else 1.0) * grad_log_pi(pi, x, y) * psi[t]
            for t, (x, y) in enumerate(zip(s, a))
        )
        mean += p * g
        second += p * float((g * g).sum())
    return mean, second - float((mean * mean).sum())


def value_baseline():
    """b(s) = E[G_t | s_t = s] over the visits of s (γ = 1), a good baseline that depends on s only."""
    pi = policy(THETA)
    num, den = torch.zeros(S, dtype=F64), torch.zeros(S, dtype=F64)
    for s, a, r, p_env in EPISODES:
        p = p_env * float(torch.stack([pi[x, y] for x, y in zip(s, a)]).prod())
        g = psi_of("reward_to_go", r, 1.0)
        for t, x in enumerate(s):
            num[x] += p * g[t]
            den[x] += p
    return num / den


def test_the_enumeration_is_a_probability_distribution():
    pi = policy(THETA)
    total = sum(p_env * float(torch.stack([pi[x, y] for x, y in zip(s, a)]).prod()) for s, a, _, p_env in EPISODES)
    assert total == pytest.approx(1.0, abs=1e-12)
    assert {len(s) for s, *_ in EPISODES} == {1, 2, 3}  # episodes of every length up to H


@pytest.mark.parametrize("kind", ["total_return", "reward_to_go", "baseline"])
def test_estimators_are_exactly_unbiased(kind):
    _, grad = exact_J_and_grad()
    baseline = value_baseline() if kind == "baseline" else None
    mean, _ = exact_moments("reward_to_go" if kind == "baseline" else kind, baseline=baseline)
    torch.testing.assert_close(mean, grad, atol=1e-12, rtol=1e-10)


def test_any_state_baseline_keeps_it_unbiased_and_reward_to_go_and_a_good_baseline_cut_the_variance():
    _, grad = exact_J_and_grad()
    arbitrary = torch.tensor([5.0, -3.0, 10.0], dtype=F64)
    mean, _ = exact_moments("reward_to_go", baseline=arbitrary)
    torch.testing.assert_close(mean, grad, atol=1e-12, rtol=1e-10)  # unbiased for *any* b(s)
    _, var_total = exact_moments("total_return")
    _, var_rtg = exact_moments("reward_to_go")
    _, var_base = exact_moments("reward_to_go", baseline=value_baseline())
    _, var_bad = exact_moments("reward_to_go", baseline=arbitrary)
    assert var_rtg < var_total  # dropping the rewards before each action removes noise
    assert var_base < 0.7 * var_rtg  # a baseline close to V lowers the variance a lot
    assert var_bad > var_rtg  # a poor baseline adds variance (still without bias)


def test_with_discounting_total_return_is_the_gradient_of_the_discounted_return_and_reward_to_go_is_not():
    gamma = 0.5
    _, grad = exact_J_and_grad(gamma)
    mean_total, _ = exact_moments("total_return", gamma)
    torch.testing.assert_close(mean_total, grad, atol=1e-12, rtol=1e-10)
    mean_weighted, _ = exact_moments("reward_to_go", gamma, discount_weights=True)  # Σ γ^t ∇log π G_t
    torch.testing.assert_close(mean_weighted, grad, atol=1e-12, rtol=1e-10)
    mean_rtg, _ = exact_moments("reward_to_go", gamma)  # the usual form, without γ^t: another direction
    assert (mean_rtg - grad).abs().max() > 1e-2


# --------------------------------------------------------------------------- sampled, through the [T, N] code path
def sample_batch(n, seed=0):
    """n episodes, one per column of [H, n] tensors; rows after an episode's end are padding
    (reward 0, each its own one-step terminated episode, so Ψ there is 0 and they add nothing)."""
    g = torch.Generator().manual_seed(seed)
    pi, P32, R32 = policy(THETA).float(), P.float(), R.float()
    states = torch.zeros(H, n, dtype=torch.long)
    actions = torch.zeros(H, n, dtype=torch.long)
    rewards = torch.zeros(H, n)
    terminated = torch.ones(H, n, dtype=torch.bool)
    real = torch.zeros(H, n, dtype=torch.bool)
    s = torch.zeros(n, dtype=torch.long)
    alive = torch.ones(n, dtype=torch.bool)
    for t in range(H):
        a = torch.multinomial(pi[s], 1, generator=g)[:, 0]
        nxt = torch.multinomial(P32[s, a], 1, generator=g)[:, 0]
        states[t], actions[t], real[t] = s, a, alive
        rewards[t] = torch.where(alive, R32[s, a], 0.0)
        ends = (nxt == 3) | (t == H - 1)
        terminated[t] = torch.where(alive, ends, True)
        alive = alive & ~ends
        s = torch.where(ends, 0, nxt)
    return states, actions, rewards, terminated, real


def per_episode_gradients(states, actions, psi, real):
    """ĝ_i = Σ_t ∇log π(a_t|s_t) Ψ_t for each column i, as [n, S, A] (closed form of the tabular softmax)."""
    pi = policy(THETA)
    w = psi.double() * real  # [H, n]
    onehot_s = torch.nn.functional.one_hot(states, S).double()  # [H, n, S]
    dlog = torch.nn.functional.one_hot(actions, A).double() - pi[states]  # [H, n, A]
    return torch.einsum("tn,tns,tna->nsa", w, onehot_s, dlog)


@pytest.mark.parametrize("kind", ["total_return", "reward_to_go", "baseline"])
def test_sampled_estimates_average_to_the_exact_gradient(kind):
    n = 40_000
    states, actions, rewards, terminated, real = sample_batch(n)
    trunc = torch.zeros_like(terminated)
    if kind == "total_return":
        psi = total_returns(rewards, terminated, trunc, 1.0)
    else:
        psi = discounted_returns(rewards, terminated, trunc, 1.0)
        if kind == "baseline":
            psi = psi - value_baseline().float()[states] * real
    g = per_episode_gradients(states, actions, psi, real)
    mean, se = g.mean(0), g.std(0) / n**0.5
    _, exact = exact_J_and_grad()
    z = ((mean - exact) / se).abs()
    assert z.max() < 4.0, f"{kind}: the sample mean is {z.max():.1f} standard errors from ∇J"


def test_pseudo_loss_gradient_is_the_policy_gradient_estimate():
    states, actions, rewards, terminated, real = sample_batch(500, seed=1)
    psi = discounted_returns(rewards, terminated, torch.zeros_like(terminated), 1.0)
    theta = THETA.float().requires_grad_()
    head = CategoricalHead(A)
    logprob = head.log_prob(theta[states[real]], actions[real])
    psi_real = psi[real].requires_grad_()  # Ψ is data: no gradient may flow into it
    loss = policy_gradient_loss(logprob, psi_real)
    loss.backward()
    estimate = per_episode_gradients(states, actions, psi, real).sum(0) / int(real.sum())
    torch.testing.assert_close(-theta.grad.double(), estimate, atol=1e-6, rtol=1e-5)
    assert psi_real.grad is None


# --------------------------------------------------------------------------- the estimators by hand
def test_total_returns_by_hand_with_episodes_in_a_row_a_cut_and_reset_rows():
    g = 0.5
    # one env: an episode of 2 steps (terminated), a NEXT_STEP reset row, an episode of 2 steps cut by the rollout end
    r = torch.tensor([[1.0], [2.0], [0.0], [4.0], [8.0]])
    term = torch.tensor([[False], [True], [False], [False], [False]])
    trunc = torch.zeros_like(term)
    valid = torch.tensor([[True], [True], [False], [True], [True]])
    out = total_returns(r, term, trunc, g, valid=valid)
    first, second = 1 + g * 2, 4 + g * 8  # each counted from its own first real step, the cut tail as 0
    torch.testing.assert_close(out[[0, 1, 3, 4]], torch.tensor([[first], [first], [second], [second]]))
    nv = torch.tensor([[0.0], [0.0], [0.0], [0.0], [16.0]])  # with a bootstrap value at the rollout end
    out = total_returns(r, term, trunc, g, next_values=nv, valid=valid)
    assert out[4, 0] == out[3, 0] == 4 + g * 8 + g**2 * 16
    # an episode already running at row 0 counts from row 0 (its earlier rewards are not here)
    out = total_returns(r[3:], term[3:], trunc[3:], g)
    torch.testing.assert_close(out, torch.tensor([[second], [second]]))


def _rollout(rewards, terminated, truncated, values, next_values):
    T, N = rewards.shape
    return Rollout(
        obs=torch.zeros(T, N, 1),
        actions=torch.zeros(T, N, dtype=torch.long),
        rewards=rewards,
        terminated=terminated,
        truncated=truncated,
        values_old=values,
        next_values=next_values,
        logprob_old=torch.zeros(T, N),
        params_old=torch.zeros(T, N, 2),
        valid=None,
    )


def test_psi_bootstraps_only_where_a_critic_exists():
    # two steps; the episode is truncated by a time limit after step 0, then a new one is cut by the rollout end
    r = torch.tensor([[1.0], [1.0]])
    v = torch.tensor([[0.5], [0.25]])
    nv = torch.tensor([[10.0], [20.0]])  # V(final obs) of the truncated episode, V(s_2) at the rollout end
    term, trunc = torch.tensor([[False], [False]]), torch.tensor([[True], [False]])
    r_ = _rollout(r, term, trunc, v, nv)
    g = 0.9
    for kind in ("total_return", "reward_to_go"):  # no critic: both cuts count as the end
        psi, targets = psi_and_targets(r_, VPGConfig(psi=kind, gamma=g))
        torch.testing.assert_close(psi, torch.tensor([[1.0], [1.0]]))
        assert targets is None
    psi, targets = psi_and_targets(r_, VPGConfig(psi="reward_to_go_baseline", gamma=g))
    torch.testing.assert_close(targets, torch.tensor([[1 + g * 10], [1 + g * 20]]))
    torch.testing.assert_close(psi, targets - v)
    psi, targets = psi_and_targets(r_, VPGConfig(psi="gae", gamma=g, gae_lambda=1.0))  # λ = 1: the same
    torch.testing.assert_close(psi, targets - v)
    # a termination never bootstraps
    r_ = _rollout(r, torch.tensor([[True], [False]]), torch.tensor([[False], [False]]), v, nv)
    _, targets = psi_and_targets(r_, VPGConfig(psi="gae", gamma=g))
    assert targets[0, 0] == 1.0


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_vpg_updates_keep_to_their_networks_with_the_right_gradient_scale(env_id):
    """The policy step (E3) moves θ only and reports the exact KL it caused; the critic's regression (E4) moves
    φ only, by the gradient of mean((V - G)²): with SGD (Adam would hide a wrong scale) the output bias moves by
    exactly -lr · 2 mean(V - G) on the first step. (The fast backend's twins are tested equal to these in
    ``tests/math/test_backends.py``.)"""
    import lucidrl
    from lucidrl.algos.vpg import fit_critic, policy_step

    m = lucidrl.VPG(
        env_id, preset=False, seed=0, verbose=0, n_envs=2, n_steps=32, n_critic_updates=5, backend="reference"
    )
    rollout = m._rollout_collector().collect(m.agent, 32)
    psi, targets = psi_and_targets(rollout, m.config)
    batch = rollout.flat(psi=psi, targets=targets)
    actor, critic = m.agent.actor_parameters(), m.agent.critic_parameters()
    assert {id(p) for p in actor}.isdisjoint(id(p) for p in critic)
    assert len(actor) + len(critic) == len(list(m.agent.parameters()))

    def snapshot(params):
        return [p.detach().clone() for p in params]

    actor_before, critic_before = snapshot(actor), snapshot(critic)
    metrics = policy_step(m.agent, m.policy_optimizer, batch, m.config)
    assert not all(torch.equal(a, b) for a, b in zip(actor, actor_before))
    assert all(torch.equal(a, b) for a, b in zip(critic, critic_before))
    with torch.no_grad():
        kl = m.agent.head.kl(batch["params_old"], m.agent.policy_params(batch["obs"])).mean()
    assert metrics["diag/kl_after_update"] == pytest.approx(float(kl)) and kl > 0

    actor_before = snapshot(actor)
    with torch.no_grad():
        error = m.agent.value(batch["obs"]) - batch["targets"]
        expected_bias_step, loss_before = -1e-3 * 2 * error.mean(), float(error.square().mean())
    bias = m.agent.critic[-1].bias
    bias_before = bias.detach().clone()

    class FirstStep(torch.optim.SGD):  # records the output bias after the first of the 5 steps
        def step(self, closure=None):
            super().step(closure)
            if not hasattr(self, "after"):
                self.after = bias.detach().clone()

    opt = FirstStep(critic, lr=1e-3)
    out = fit_critic(m.agent, opt, batch, m.config)
    torch.testing.assert_close(opt.after - bias_before, expected_bias_step.reshape(1), rtol=1e-4, atol=1e-7)
    assert all(torch.equal(a, b) for a, b in zip(actor, actor_before))  # the regression never moves π
    assert out["diag/value_loss_before"] == pytest.approx(loss_before, rel=1e-6)
    assert out["diag/value_loss_last"] < out["diag/value_loss_before"]  # the regression made progress


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_vpg_step_is_measured_as_trpo_measures_its_steps(env_id):
    """``diag/step_norm`` and ``diag/surrogate_improvement`` of the policy step. With plain SGD the step is
    Δ = α g (g the gradient of -(E3), the policy gradient), so ‖Δ‖ = α‖g‖, and TRPO's surrogate
    L(θ) = mean(π_θ/π_old · Ψ) gains L(θ_old + Δ) - L(θ_old) = gᵀΔ + O(α²) = α‖g‖² + O(α²): at θ_old the
    surrogate's gradient *is* g, the fact TRPO's linear model rests on."""
    import lucidrl
    from lucidrl.advantages import normalize
    from lucidrl.algos.vpg import policy_step

    m = lucidrl.VPG(env_id, preset=False, seed=1, verbose=0, n_envs=2, n_steps=64, backend="reference")
    rollout = m._rollout_collector().collect(m.agent, 64)
    psi, targets = psi_and_targets(rollout, m.config)
    batch = rollout.flat(psi=psi, targets=targets)
    actor = m.agent.actor_parameters()
    logprob = m.agent.head.log_prob(m.agent.policy_params(batch["obs"]), batch["actions"])
    grads = torch.autograd.grad(-policy_gradient_loss(logprob, normalize(batch["psi"])), actor)
    g = torch.cat([x.reshape(-1) for x in grads])
    before = [p.detach().clone() for p in actor]
    for lr in (1e-4, 1e-3):
        with torch.no_grad():
            for p, b in zip(actor, before):
                p.copy_(b)
        metrics = policy_step(m.agent, torch.optim.SGD(actor, lr=lr), batch, m.config)
        assert metrics["diag/step_norm"] == pytest.approx(lr * float(g.norm()), rel=1e-4)
        assert metrics["diag/surrogate_improvement"] == pytest.approx(lr * float(g.dot(g)), rel=0.05)
