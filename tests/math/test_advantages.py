"""GAE and discounted returns against hand computations and their defining identities."""

import pytest
import torch

from lucidrl.advantages import discounted_returns, gae


def test_gae_matches_a_hand_computation():
    # one env, three steps; the episode is truncated after step 1, then a new one starts
    r = torch.tensor([[1.0], [2.0], [3.0]])
    v = torch.tensor([[0.5], [1.0], [2.0]])
    v_final = 4.0  # V(final observation of the truncated episode)
    v_last = 1.5  # V(s_3), the episode still running at the end of the rollout
    nv = torch.tensor([[1.0], [v_final], [v_last]])
    term = torch.tensor([[False], [False], [False]])
    trunc = torch.tensor([[False], [True], [False]])
    g, lam = 0.9, 0.8
    d0 = 1.0 + g * 1.0 - 0.5
    d1 = 2.0 + g * v_final - 1.0
    d2 = 3.0 + g * v_last - 2.0
    a2 = d2
    a1 = d1  # the trace is cut at the truncation: nothing of the next episode leaks in
    a0 = d0 + g * lam * a1
    adv, ret = gae(r, v, nv, term, trunc, g, lam)
    torch.testing.assert_close(adv, torch.tensor([[a0], [a1], [a2]]))
    torch.testing.assert_close(ret, adv + v)


def test_termination_does_not_bootstrap_and_truncation_does():
    r, v, nv = torch.tensor([[1.0]]), torch.tensor([[0.3]]), torch.tensor([[5.0]])
    no = torch.tensor([[False]])
    yes = torch.tensor([[True]])
    adv_term, _ = gae(r, v, nv, yes, no, 0.99, 0.95)
    adv_trunc, _ = gae(r, v, nv, no, yes, 0.99, 0.95)
    torch.testing.assert_close(adv_term, torch.tensor([[1.0 - 0.3]]))
    torch.testing.assert_close(adv_trunc, torch.tensor([[1.0 + 0.99 * 5.0 - 0.3]]))


def _random_rollout(T=40, N=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(T, N, generator=g)
    v = torch.randn(T, N, generator=g)
    term = torch.rand(T, N, generator=g) < 0.1
    trunc = (torch.rand(T, N, generator=g) < 0.1) & ~term
    final_v = torch.randn(T, N, generator=g)
    last_v = torch.randn(N, generator=g)
    # next_values: the next row's value while the episode goes on, V(final obs) at a cut
    nv = torch.cat([v[1:], last_v[None]])
    nv = torch.where(term | trunc, final_v, nv)
    return r, v, nv, term, trunc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gae_lambda_one_is_discounted_return_minus_value(seed):
    r, v, nv, term, trunc = _random_rollout(seed=seed)
    adv, _ = gae(r, v, nv, term, trunc, 0.97, 1.0)
    ret = discounted_returns(r, term, trunc, 0.97, next_values=nv)
    torch.testing.assert_close(adv, ret - v, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_gae_lambda_zero_is_td_error(seed):
    r, v, nv, term, trunc = _random_rollout(seed=seed)
    adv, _ = gae(r, v, nv, term, trunc, 0.97, 0.0)
    torch.testing.assert_close(adv, r + 0.97 * (~term).float() * nv - v)


def test_nothing_leaks_across_an_episode_end():
    r, v, nv, term, trunc = _random_rollout(T=10, N=1)
    term[:] = False
    trunc[:] = False
    term[4, 0] = True
    adv, _ = gae(r, v, nv, term, trunc, 0.99, 0.95)
    r2 = r.clone()
    r2[5:] += 100.0  # the next episode's rewards
    adv2, _ = gae(r2, v, nv, term, trunc, 0.99, 0.95)
    torch.testing.assert_close(adv[:5], adv2[:5])
    assert not torch.allclose(adv[5:], adv2[5:])


def test_discounted_returns_by_hand():
    r = torch.tensor([[1.0], [1.0], [1.0], [1.0]])
    term = torch.tensor([[False], [True], [False], [False]])
    trunc = torch.zeros_like(term)
    g = 0.5
    # Monte Carlo (no bootstrap): episode 1 = steps 0-1, episode 2 = steps 2-3 (cut by the rollout end)
    ret = discounted_returns(r, term, trunc, g)
    torch.testing.assert_close(ret, torch.tensor([[1.5], [1.0], [1.5], [1.0]]))
    # with a bootstrap value at the rollout end
    nv = torch.tensor([[0.0], [0.0], [0.0], [2.0]])
    ret = discounted_returns(r, term, trunc, g, next_values=nv)
    torch.testing.assert_close(ret, torch.tensor([[1.5], [1.0], [1.0 + 0.5 * 2.0], [1.0 + 0.5 * 2.0]]))


def test_a_step_both_terminated_and_truncated_does_not_bootstrap_wherever_it_falls():
    """Gymnasium's TimeLimit sets truncated too when the last allowed step also terminates; the
    terminal state's value is 0 whether that row is inside the rollout or its last row."""
    r = torch.ones(3, 1)
    term = torch.tensor([[False], [True], [False]])
    trunc = torch.tensor([[False], [True], [False]])
    nv = torch.tensor([[0.0], [100.0], [0.0]])  # V(final obs) of the terminal state: must be ignored
    g = 0.9
    ret = discounted_returns(r, term, trunc, g, next_values=nv)
    torch.testing.assert_close(ret, torch.tensor([[1.9], [1.0], [1.0]]))
    # the same transition as the rollout's last row
    ret_last = discounted_returns(r[:2], term[:2], trunc[:2], g, next_values=nv[:2])
    torch.testing.assert_close(ret_last, ret[:2])


@pytest.mark.parametrize("seed", [0, 1])
def test_gae_lambda_one_is_discounted_return_minus_value_with_overlapping_flags(seed):
    r, v, _, term, _ = _random_rollout(seed=seed)
    g = torch.Generator().manual_seed(seed + 10)
    trunc = torch.rand(term.shape, generator=g) < 0.2  # drawn apart from term: some rows carry both
    assert (term & trunc).any()
    nv = torch.cat([v[1:], torch.randn(1, v.shape[1], generator=g)])
    nv = torch.where(term | trunc, torch.randn(v.shape, generator=g), nv)  # V(final obs) at every cut
    adv, _ = gae(r, v, nv, term, trunc, 0.97, 1.0)
    torch.testing.assert_close(adv, discounted_returns(r, term, trunc, 0.97, next_values=nv) - v, rtol=1e-5, atol=1e-5)
