"""TRPO's math, checked exactly on tiny categorical policies (lucidrl/algos/trpo.py, lucidrl/linalg.py).

The Fisher-vector product against the Hessian of the mean KL and against the Fisher matrix's
definition; conjugate gradient against a direct solve; the step length; the line search's two
acceptance tests and its fallback; the surrogate's gradient at θ_old against the vanilla policy
gradient. The reference (double backward) throughout; the fast backend's F v (Jᵀ M J) is checked here too
where its tanh takes the sigmoid path, which the small batches of ``tests/math/test_backends.py`` do not reach.
"""

import math

import gymnasium as gym
import pytest
import torch
from torch.func import functional_call, jacrev

from lucidrl.algos.trpo import (
    TRPOConfig,
    backtracking_line_search,
    fisher_vector_product,
    local_models,
    mean_kl,
    surrogate_advantage,
    trpo_policy_step,
)
from lucidrl.fast import trpo as fast_trpo
from lucidrl.linalg import conjugate_gradient, flat_grad, get_flat_params, set_flat_params
from lucidrl.networks import ActorCritic, mlp

N_ACTIONS = 3


class Theta:
    """The actor's parameters θ as one flat vector, read and written in place (``lucidrl.linalg``)."""

    def __init__(self, agent):
        self.params = agent.actor_parameters()
        self.numel = sum(p.numel() for p in self.params)

    def get(self) -> torch.Tensor:
        return get_flat_params(self.params)

    def copy_(self, flat: torch.Tensor) -> None:
        set_flat_params(self.params, flat)


def _tiny_actor(seed=0, n_obs=16, dtype=torch.float64, hidden=(8, 8)):
    """A 3-action softmax policy on 4-d observations (an ActorCritic, as TRPO builds it), its flat θ, and a
    batch from π_old."""
    agent = ActorCritic(
        gym.spaces.Box(-1, 1, (4,)),
        gym.spaces.Discrete(N_ACTIONS),
        list(hidden),
        "tanh",
        algo="TRPO",
        share_encoder=False,
    )
    torch.manual_seed(seed)
    agent.actor = mlp(4, list(hidden), N_ACTIONS, "tanh", out_std=1.0)  # out_std 1: a far-from-uniform π
    agent.encoder = torch.nn.Identity()  # observations as they are, in float64 too (FlattenFloat casts to float32)
    agent.to(dtype)
    actor, head = agent.actor, agent.head
    obs = torch.randn(n_obs, 4, dtype=dtype)
    with torch.no_grad():
        logits_old = actor(obs)
        actions = head.sample(logits_old)
    adv = torch.randn(n_obs, dtype=dtype)
    return agent, Theta(agent), head, obs, actions, logits_old, head.log_prob(logits_old, actions), adv


def _as_function(actor, obs):
    """logits(θ_flat): the actor as a function of one flat parameter vector (for autograd.functional)."""
    names = [n for n, _ in actor.named_parameters()]
    shapes = [p.shape for p in actor.parameters()]

    def logits(theta_flat):
        chunks = torch.split(theta_flat, [math.prod(s) for s in shapes])
        return functional_call(actor, {n: c.view(s) for n, c, s in zip(names, chunks, shapes)}, (obs,))

    return logits


def _fvp_at_old(actor, head, obs, logits_old, damping=0.0):
    params = list(actor.parameters())
    return fisher_vector_product(mean_kl(head, logits_old, actor(obs)), params, damping)


# --------------------------------------------------------------------------- Fisher-vector product
@pytest.mark.parametrize("damping", [0.0, 0.1])
def test_fvp_equals_hessian_of_mean_kl_times_v(damping):
    agent, theta, head, obs, actions, logits_old, logprob_old, adv = _tiny_actor()
    actor = agent.actor
    f = _as_function(actor, obs)
    theta_old = theta.get()
    hessian = torch.autograd.functional.hessian(lambda t: mean_kl(head, logits_old, f(t)), theta_old)
    fvp = _fvp_at_old(actor, head, obs, logits_old, damping)
    # the local models TRPO's step uses: the same F v, and g = ∇L(θ_old)
    batch = _policy_batch(obs, actions, logprob_old, logits_old, adv)
    L_old, g, models_fvp, _, _ = local_models(agent, batch, adv, damping)
    assert L_old == pytest.approx(float(adv.mean()), rel=1e-12)  # every ratio is 1 at θ_old
    surrogate = lambda t: surrogate_advantage(head.log_prob(f(t), actions), logprob_old, adv)  # noqa: E731
    torch.testing.assert_close(g, torch.autograd.functional.jacobian(surrogate, theta_old), rtol=1e-10, atol=1e-12)
    for seed in range(3):
        v = torch.randn(theta.numel, dtype=theta_old.dtype, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(fvp(v), hessian @ v + damping * v, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(models_fvp(v), hessian @ v + damping * v, rtol=1e-10, atol=1e-12)
    # F is symmetric positive semi-definite: the Fisher matrix of the policy
    torch.testing.assert_close(hessian, hessian.T, rtol=1e-10, atol=1e-12)
    assert torch.linalg.eigvalsh(hessian).min() > -1e-10


@pytest.mark.parametrize("models", [local_models, fast_trpo.local_models], ids=["reference", "fast"])
def test_fvp_in_float32_on_a_large_batch_matches_the_float64_hessian(models):
    # 600 observations x 8 hidden units in float32: the reference's double backward through nn.Tanh, and the
    # fast backend's Jᵀ M J, whose tanh takes the sigmoid path there (>= 4096 elements, float32), against
    # torch.tanh's Hessian in float64
    agent, theta, head, obs, actions, logits_old, logprob_old, adv = _tiny_actor(n_obs=600, dtype=torch.float32)
    actor64 = mlp(4, [8, 8], N_ACTIONS, "tanh").double()
    actor64.load_state_dict({k: v.double() for k, v in agent.actor.state_dict().items()})
    f64 = _as_function(actor64, obs.double())
    hessian = torch.autograd.functional.hessian(
        lambda t: mean_kl(head, logits_old.double(), f64(t)), theta.get().double()
    )
    v = torch.randn(theta.numel)
    fvp = models(agent, _policy_batch(obs, actions, logprob_old, logits_old, adv), adv, 0.0)[2]
    got = fvp(v)
    want = hessian @ v.double()
    assert (got.double() - want).norm() < 1e-4 * want.norm()


def _per_action_scores(actor, obs, theta):
    """∇_θ log π(a|s) for every state and every action: [N, A, P] (exact, by jacrev)."""
    f = _as_function(actor, obs)
    return jacrev(lambda t: f(t).log_softmax(-1))(theta.detach().clone())


def test_fvp_is_the_fisher_matrix_times_v():
    agent, theta, head, obs, _, logits_old, _, _ = _tiny_actor()
    actor = agent.actor
    v = torch.randn(theta.numel, dtype=obs.dtype)
    fv = _fvp_at_old(actor, head, obs, logits_old)(v)
    scores = _per_action_scores(actor, obs, theta.get())  # [N, A, P]
    probs = logits_old.softmax(-1)  # [N, A]
    # F v = E_s Σ_a π_old(a|s) ∇log π(a|s) (∇log π(a|s)ᵀ v), the expectation over actions done exactly
    exact = torch.einsum("na,nap,na->p", probs, scores, scores @ v) / obs.shape[0]
    torch.testing.assert_close(fv, exact, rtol=1e-9, atol=1e-12)


def test_fvp_agrees_with_the_empirical_fisher_within_sampling_error():
    """F v against (1/M) Σ_i ∇log π(a_i|s_i) ∇log π(a_i|s_i)ᵀ v with a_i ~ π_old(·|s_i).

    Tolerance: each coordinate of the sample mean has standard error σ_p / sqrt(M), σ_p the
    sample standard deviation of that coordinate's M terms. We allow 5 standard errors per
    coordinate: a correct F v fails this with probability < P · 6e-7 (two-sided Gaussian tail
    at 5σ, union bound over the P ≈ 130 coordinates), i.e. about 1e-4, and the seed is fixed
    anyway. The estimate must also be close overall: a wrong F v (e.g. off by a factor 2, or a
    transposed Hessian term) misses by hundreds of standard errors.
    """
    agent, theta, head, obs, _, logits_old, _, _ = _tiny_actor(n_obs=64)
    actor = agent.actor
    v = torch.randn(theta.numel, dtype=obs.dtype)
    fv = _fvp_at_old(actor, head, obs, logits_old)(v)
    scores = _per_action_scores(actor, obs, theta.get())  # [N, A, P]
    per_state = 400  # actions sampled per state: M = 64 * 400 samples
    gen = torch.Generator().manual_seed(1)
    actions = torch.multinomial(logits_old.softmax(-1), per_state, replacement=True, generator=gen)  # [N, K]
    sampled = scores[torch.arange(obs.shape[0])[:, None], actions]  # [N, K, P]: ∇log π(a_i|s_i)
    terms = (sampled * (sampled @ v)[..., None]).reshape(-1, theta.numel)  # [M, P]
    estimate = terms.mean(0)
    stderr = terms.std(0) / math.sqrt(terms.shape[0])
    assert ((estimate - fv).abs() <= 5 * stderr + 1e-12).all()
    assert (estimate - fv).norm() < 0.1 * fv.norm()


# --------------------------------------------------------------------------- conjugate gradient
def test_cg_matches_a_direct_solve_on_a_random_spd_system():
    gen = torch.Generator().manual_seed(0)
    n = 30
    q = torch.randn(n, n, dtype=torch.float64, generator=gen)
    a = q @ q.T + 0.5 * torch.eye(n, dtype=torch.float64)
    b = torch.randn(n, dtype=torch.float64, generator=gen)
    x, info = conjugate_gradient(lambda v: a @ v, b, max_steps=3 * n, residual_tol=1e-20)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-8, atol=1e-10)
    assert info["steps"] <= 3 * n and info["residual_norm"] < 1e-9
    torch.testing.assert_close(torch.tensor(info["xAx"], dtype=torch.float64), x @ a @ x)


def test_cg_stopped_early_reports_its_true_residual_and_xAx():
    gen = torch.Generator().manual_seed(1)
    n = 40
    q = torch.randn(n, n, dtype=torch.float64, generator=gen)
    a = q @ q.T + 0.1 * torch.eye(n, dtype=torch.float64)
    b = torch.randn(n, dtype=torch.float64, generator=gen)
    x, info = conjugate_gradient(lambda v: a @ v, b, max_steps=5)
    assert info["steps"] == 5 and info["residual_norm"] > 1e-6  # not converged in 5 steps on 40 dimensions
    assert info["residual_norm"] == pytest.approx(float((b - a @ x).norm()), rel=1e-8)
    assert info["xAx"] == pytest.approx(float(x @ a @ x), rel=1e-8)


def test_cg_on_a_zero_right_hand_side_returns_zero_without_products():
    calls = []
    x, info = conjugate_gradient(lambda v: calls.append(1) or v, torch.zeros(5), max_steps=10)
    assert torch.equal(x, torch.zeros(5)) and info["steps"] == 0 and not calls


def test_flat_parameter_helpers_round_trip():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    params = list(net.parameters())
    flat = get_flat_params(params)
    assert flat.shape == (sum(p.numel() for p in params),)
    set_flat_params(params, flat + 1.0)
    torch.testing.assert_close(get_flat_params(params), flat + 1.0)
    y = net(torch.randn(5, 3)).sum()
    reference = torch.cat([g.reshape(-1) for g in torch.autograd.grad(y, params, retain_graph=True)])
    torch.testing.assert_close(flat_grad(y, params), reference)
    with pytest.raises(ValueError, match="7 values for 26 parameters"):
        set_flat_params(params, torch.zeros(7))


# --------------------------------------------------------------------------- step length and line search
def _policy_batch(obs, actions, logprob_old, logits_old, adv):
    return {"obs": obs, "actions": actions, "logprob_old": logprob_old, "params_old": logits_old, "advantages": adv}


@pytest.mark.parametrize("variant", ["npg", "trpo"])
def test_natural_gradient_step_fills_the_quadratic_trust_region(variant):
    agent, theta, head, obs, actions, logits_old, logprob_old, adv = _tiny_actor(n_obs=64)
    actor = agent.actor
    # F is singular for a softmax policy (adding a constant to every logit changes nothing), so CG
    # solves the damped system (F + λI) s = g, and the step length uses the same damped matrix
    delta, damping = 1e-4, 1e-2
    cfg = TRPOConfig(target_kl=delta, cg_damping=damping, cg_max_steps=200, variant=variant, normalize_advantage=False)
    theta_old = theta.get()
    metrics = trpo_policy_step(agent, _policy_batch(obs, actions, logprob_old, logits_old, adv), cfg)
    assert metrics["diag/cg_residual"] < 1e-5  # CG converged (‖r‖² < 1e-10): the step is along F⁻¹g
    theta_new = theta.get()
    step = theta_new - theta_old
    with torch.no_grad():
        real_kl = float(mean_kl(head, logits_old, actor(obs)))
        theta.copy_(theta_old)  # F is the curvature at θ_old
    fvp, fvp_damped = _fvp_at_old(actor, head, obs, logits_old), _fvp_at_old(actor, head, obs, logits_old, damping)
    shrink = 0.8 ** metrics["train/backtracks"]  # TRPO may take a shorter step than the full one
    # (E7): the full step β s satisfies ½ (βs)ᵀ(F + λI)(βs) = δ exactly
    assert 0.5 * step @ fvp_damped(step) / shrink**2 == pytest.approx(delta, rel=1e-6)
    # with δ this small the quadratic model is accurate: the real KL is ½ ΔᵀFΔ (a little under δ: the damping)
    assert real_kl == pytest.approx(metrics["diag/kl"], rel=1e-9)
    assert real_kl == pytest.approx(0.5 * float(step @ fvp(step)), rel=0.02)
    assert 0.5 * shrink**2 * delta < real_kl <= delta
    assert metrics["diag/surrogate_improvement"] > 0
    # the step is along the natural gradient: (F + λI) Δ is parallel to g
    g = flat_grad(surrogate_advantage(head.log_prob(actor(obs), actions), logprob_old, adv), list(actor.parameters()))
    assert torch.nn.functional.cosine_similarity(fvp_damped(step), g, dim=0) > 1 - 1e-9


def _evaluator(actor, theta, head, obs, actions, logits_old, logprob_old, adv, log):
    """evaluate(θ) -> (L(θ), D̄(θ)) for the line search, recording each call in ``log``."""

    @torch.no_grad()
    def evaluate(candidate):
        theta.copy_(candidate)
        logits = actor(obs)
        surrogate = surrogate_advantage(head.log_prob(logits, actions), logprob_old, adv)
        kl = mean_kl(head, logits_old, logits)
        log.append((float(surrogate), float(kl)))
        return surrogate, kl

    return evaluate


def _natural_direction(actor, head, obs, actions, logits_old, logprob_old, adv, damping=1e-2):
    params = list(actor.parameters())
    logits = actor(obs)
    g = flat_grad(surrogate_advantage(head.log_prob(logits, actions), logprob_old, adv), params, retain_graph=True)
    s, info = conjugate_gradient(fisher_vector_product(mean_kl(head, logits_old, logits), params, damping), g, 200)
    return s, info["xAx"]


def test_line_search_backtracks_from_a_step_that_breaks_the_kl_bound():
    agent, theta, head, obs, actions, logits_old, logprob_old, adv = _tiny_actor(n_obs=64)
    actor = agent.actor
    delta = 0.01
    s, sFs = _natural_direction(actor, head, obs, actions, logits_old, logprob_old, adv)
    full_step = 5.0 * math.sqrt(2 * delta / sFs) * s  # 5 times too long: KL about 25 δ
    theta_old, log = theta.get(), []
    l_old = float(adv.mean())  # L(θ_old): every ratio is 1
    new_theta, info = backtracking_line_search(
        _evaluator(actor, theta, head, obs, actions, logits_old, logprob_old, adv, log),
        theta_old,
        full_step,
        l_old,
        delta,
        0.8,
        20,
    )
    assert info["accepted"] and info["backtracks"] >= 1
    assert all(kl > delta for _, kl in log[:-1])  # every rejected candidate broke the bound ...
    assert log[0][0] > l_old  # ... even though it improved the surrogate
    assert info["kl"] <= delta and info["surrogate"] > l_old
    torch.testing.assert_close(new_theta, theta_old + 0.8 ** info["backtracks"] * full_step)


def test_line_search_rejects_a_step_that_lowers_the_surrogate():
    agent, theta, head, obs, actions, logits_old, logprob_old, adv = _tiny_actor(n_obs=64)
    actor = agent.actor
    delta = 0.01
    s, sFs = _natural_direction(actor, head, obs, actions, logits_old, logprob_old, adv)
    full_step = -0.5 * math.sqrt(2 * delta / sFs) * s  # downhill, well inside the trust region
    theta_old, log = theta.get(), []
    l_old = float(adv.mean())  # L(θ_old): every ratio is 1
    new_theta, info = backtracking_line_search(
        _evaluator(actor, theta, head, obs, actions, logits_old, logprob_old, adv, log),
        theta_old,
        full_step,
        l_old,
        delta,
        0.8,
        10,
    )
    assert len(log) == 10 and all(kl <= delta and surr < l_old for surr, kl in log)  # within δ, but worse: rejected
    assert not info["accepted"] and info["backtracks"] == 10 and info["kl"] == 0.0
    assert torch.equal(new_theta, theta_old)


def test_line_search_takes_the_first_candidate_that_passes_both_tests():
    outcomes = iter([(1.0, 0.5), (-0.1, 0.001), (0.2, 0.01), (0.3, 0.001)])  # KL too big; worse; ok (KL = δ); ok
    theta, info = backtracking_line_search(lambda t: next(outcomes), torch.zeros(2), torch.ones(2), 0.0, 0.01, 0.5, 10)
    assert info == {"accepted": True, "backtracks": 2, "kl": 0.01, "surrogate": 0.2}
    torch.testing.assert_close(theta, torch.full((2,), 0.25))


def test_failed_line_search_restores_the_old_parameters(monkeypatch):
    agent, theta, head, obs, actions, logits_old, logprob_old, adv = _tiny_actor(n_obs=64)
    actor = agent.actor
    real_cg = conjugate_gradient

    def downhill_cg(matvec, b, max_steps, residual_tol=1e-10):  # a search direction that only makes things worse
        s, info = real_cg(matvec, b, max_steps, residual_tol)
        return -s, info

    monkeypatch.setattr("lucidrl.algos.trpo.conjugate_gradient", downhill_cg)
    theta_old = theta.get()
    cfg = TRPOConfig(line_search_max_iter=5)
    metrics = trpo_policy_step(agent, _policy_batch(obs, actions, logprob_old, logits_old, adv), cfg)
    assert torch.equal(theta.get(), theta_old)
    with torch.no_grad():
        assert torch.equal(actor(obs), logits_old)  # the policy is π_old again, exactly
    assert metrics["train/line_search_success"] == 0.0 and metrics["train/backtracks"] == 5
    assert metrics["diag/kl"] == 0.0 and metrics["diag/surrogate_improvement"] == 0.0


# --------------------------------------------------------------------------- gradient at θ_old
def test_surrogate_gradient_at_theta_old_equals_the_vanilla_policy_gradient():
    agent, theta, head, obs, actions, logits_old, logprob_old, adv = _tiny_actor(n_obs=64)
    actor = agent.actor
    params = list(actor.parameters())
    logprob = head.log_prob(actor(obs), actions)
    assert torch.allclose(logprob, logprob_old)  # at θ_old every ratio is 1 ...
    g_trpo = flat_grad(surrogate_advantage(logprob, logprob_old, adv), params)
    vpg_loss = -(head.log_prob(actor(obs), actions) * adv).mean()  # -E[log π(a|s) Â]
    g_vpg = flat_grad(vpg_loss, params)
    torch.testing.assert_close(g_trpo, -g_vpg, rtol=1e-10, atol=1e-12)  # ... and ∇L = E[∇log π Â] = -∇(VPG loss)
    # the KL's gradient vanishes there (θ_old is its minimum): only its curvature shapes the step
    assert flat_grad(mean_kl(head, logits_old, actor(obs)), params).abs().max() < 1e-12


# --------------------------------------------------------------------------- one update against sb3-contrib
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_one_update_equals_sb3_contrib_trpo_train_on_the_same_rollout(env_id):
    """The same rollout (terminations inside and at the end), the same initial weights and a fresh critic Adam:
    lucidrl's reference trpo_policy_step + fit_critic and sb3-contrib's TRPO.train end with the same actor (the
    natural-gradient step, its length and the line search's accepted candidate, log σ included) and the same critic
    (five passes of one minibatch, so the shuffles cannot differ). sb3-contrib's line search checks KL(π_new ‖ π_old)
    where lucidrl checks the paper's KL(π_old ‖ π_new); both are second order in the step with the same Fisher
    matrix, so they accept the same candidate unless it lies between the two at the bound δ: here the accepted
    candidate's KL is below δ both ways, and equal weights show that neither rejected a candidate the other took."""
    sb3_contrib = pytest.importorskip("sb3_contrib")
    from stable_baselines3.common.env_util import make_vec_env

    from lucidrl.algos.trpo import TRPO, fit_critic, trpo_policy_step
    from tests.math.sb3_twins import assert_same_weights, train_twin_on_one_rollout

    T, N = 16, 4
    kw = dict(n_steps=T, batch_size=T * N, n_critic_updates=5, learning_rate=3e-3, gae_lambda=0.9, gamma=0.95,
              target_kl=0.01, cg_max_steps=10, cg_damping=0.1)  # fmt: skip
    env = gym.make_vec(env_id, N, vectorization_mode="sync")
    ours = TRPO(env, preset=False, n_envs=N, seed=0, verbose=0, backend="reference", **kw)
    theirs = sb3_contrib.TRPO("MlpPolicy", make_vec_env(env_id, n_envs=N, seed=0), seed=0, device="cpu", **kw)
    first = ours.agent.actor[0].weight.detach().clone()
    batch = train_twin_on_one_rollout(ours, theirs, env, T, N, kw["gamma"], kw["gae_lambda"], kw["learning_rate"])
    m = trpo_policy_step(ours.agent, batch, ours.config)
    fit_critic(ours.agent, ours.critic_optimizer, batch, ours.config, torch.Generator().manual_seed(0))
    assert m["train/line_search_success"] == 1.0 and 0.0 < m["diag/kl"] < kw["target_kl"]
    with torch.no_grad():  # the accepted step's KL the other way round, which sb3-contrib's line search checks
        reverse = ours.agent.head.kl(ours.agent.policy_params(batch["obs"]), batch["params_old"]).mean()
    assert 0.0 < float(reverse) < kw["target_kl"]
    assert_same_weights(ours, theirs, atol=1e-5)
    assert (ours.agent.actor[0].weight - first).abs().max() > 1e-4  # the update moved the actor (both the same way)
