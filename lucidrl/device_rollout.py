"""On-policy rollouts that never leave the device: batched torch envs (``lucidrl.envs.torch``) stepped by π.

``RolloutCollector`` (``lucidrl.rollout``) steps Gymnasium's NumPy envs: every step sends the actions
to the host and the observations back. With a ``TorchVectorEnv`` the envs are tensors on the same
device as the networks, so a whole rollout is a sequence of tensor ops with no host round trip:
the episode statistics are read once, at the end of the rollout.

The same rules for episode ends as ``lucidrl.rollout`` (DESIGN.md, "Episode ends"): the torch envs
autoreset on the same step and give the true last observation of every row in ``info["final_obs"]``
(rows that did not end hold the step's observation itself), so ``next_values[t]`` = V(final_obs[t])
is V(s_{t+1}) of the true next state on every row, computed in one batched critic pass after the
rollout. ``terminated`` masks it in GAE, ``truncated`` keeps it: the time-limit bootstrap.
Observation normalisation and reward scaling, when the model has them, follow ``RolloutCollector``'s
order at every step, as tensor ops on the device (docs/normalization.md, section 4).

On a CUDA device with ``compile=True`` the whole rollout (T steps of acting and stepping, then the
values of the final observations) is captured once as a CUDA graph and replayed: one launch per
rollout instead of a few thousand (``torch.cuda.CUDAGraph``). The graph reads and writes fixed
buffers, so the collector owns them: the env's tensors, the observation, the episode counters, the
normalisers' statistics and the [T, N] buffers the ``Rollout`` returns (valid until the next
``collect``). The policy step may also be ``torch.compile``d (``compile_step=True``): inductor fuses
the env's elementwise dynamics and the MLP's activations.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import torch

from lucidrl.envs.normalize import ObsNormalizer, RewardScaler
from lucidrl.logging import RECENT_EPISODES
from lucidrl.networks import ActorCritic
from lucidrl.rollout import PolicyStep, Rollout, rollout_policy


def box_bounds(env, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The Box action space's (low, high) as tensors on ``device``; None for discrete actions."""
    space = env.single_action_space
    if not isinstance(space, gym.spaces.Box):
        return None
    return (
        torch.as_tensor(space.low, dtype=torch.float32, device=device),
        torch.as_tensor(space.high, dtype=torch.float32, device=device),
    )


class DeviceRolloutCollector:
    """Collects T steps of N torch envs with the current policy; the last observation carries over between calls."""

    def __init__(
        self,
        env,
        device: torch.device,
        seed: int | list[int] | None = None,
        generator: torch.Generator | None = None,
        policy: Callable[[ActorCritic], PolicyStep] = rollout_policy,
        cuda_graph: bool = False,
        compile_step: bool = False,
        obs_normalizer: ObsNormalizer | None = None,
        reward_scaler: RewardScaler | None = None,
    ):
        """``obs_normalizer`` / ``reward_scaler``: the model's normalisers (None: off), updated on the device at every
        step in ``RolloutCollector``'s order (``lucidrl.rollout``'s docstring, "Normalisation")."""
        self.env = env
        self.device = torch.device(device)
        if env.device != self.device:
            from lucidrl.errors import EnvError

            raise EnvError(
                f"the torch env lives on {env.device} but the model on {self.device}; "
                f"build the env with device={str(self.device)!r}"
            )
        self.generator = generator
        self.policy = policy
        self.n_envs = env.num_envs
        self.action_bounds = box_bounds(env, self.device)
        obs, _ = env.reset(seed=seed)
        self.obs_normalizer, self.reward_scaler = obs_normalizer, reward_scaler
        if obs_normalizer is not None:  # as RolloutCollector: the first observations count, then are normalised
            obs_normalizer.update(obs)
            obs = obs_normalizer(obs)
        self.obs = obs.clone()
        # (N3) each env's running discounted return R, continued from a resumed checkpoint's
        returns = None if reward_scaler is None else reward_scaler.returns
        self.discounted = torch.zeros(self.n_envs, dtype=torch.float64, device=self.device)
        if returns is not None and returns.shape == (self.n_envs,):
            self.discounted.copy_(torch.as_tensor(returns))
        self.ep_return = torch.zeros(self.n_envs, dtype=torch.float64, device=self.device)
        self.ep_length = torch.zeros(self.n_envs, dtype=torch.int64, device=self.device)
        self.cuda_graph = cuda_graph and self.device.type == "cuda"
        self.compile_step = compile_step
        self._env_step = torch.compile(env.functional_step, dynamic=False) if compile_step else env.functional_step
        # draw each rollout's reset states up front (TorchVectorEnv.reset_pool) where every op is a kernel launch;
        # eager on the CPU the env draws only its finished rows', and compiled the hash fuses into the step
        self.reset_pool = self.device.type != "cpu" and not compile_step
        self._graph: torch.cuda.CUDAGraph | None = None
        self._graph_key: tuple | None = None
        self._buffers: dict[str, torch.Tensor] | None = None

    def close(self) -> None:
        self._graph = None

    # ------------------------------------------------------------------ the rollout, as tensor ops
    def allocate(self, agent: ActorCritic, T: int) -> dict[str, torch.Tensor]:
        """The buffers of a T-step rollout (``run`` writes them in place; ``vmap_train`` uses them too)."""
        N, head, dev = self.n_envs, agent.head, self.device
        obs_shape = tuple(self.obs.shape[1:])
        with torch.no_grad():
            p, _ = agent(self.obs[:1])
        return {
            "obs": torch.empty((T, N, *obs_shape), dtype=self.obs.dtype, device=dev),
            "final_obs": torch.empty((T, N, *obs_shape), dtype=self.obs.dtype, device=dev),
            "actions": torch.empty((T, N, *head.action_shape), dtype=head.action_dtype, device=dev),
            "params": torch.empty((T, N, p.shape[-1]), dtype=p.dtype, device=dev),
            "values": torch.empty((T, N), dtype=p.dtype, device=dev),
            "next_values": torch.empty((T, N), dtype=p.dtype, device=dev),
            "logprob": torch.empty((T, N), dtype=p.dtype, device=dev),
            "rewards": torch.empty((T, N), dtype=torch.float32, device=dev),
            "terminated": torch.empty((T, N), dtype=torch.bool, device=dev),
            "truncated": torch.empty((T, N), dtype=torch.bool, device=dev),
            "ep_return": torch.empty((T, N), dtype=torch.float64, device=dev),  # the return so far, after step t
            "ep_length": torch.empty((T, N), dtype=torch.int64, device=dev),
            "noise": head.noise((T, N), None, dev),
        }

    def run(self, agent: ActorCritic, step: Callable, b: dict[str, torch.Tensor], T: int) -> None:
        """T steps, writing into the buffers ``b`` and the carried tensors in place (graph-capturable).

        ``step(obs, noise) -> (action, params, values)`` acts on every row (``rollout_policy``; ``vmap_train``
        gives one that runs each agent on its own envs); ``agent.head`` gives the log-probabilities.

        Written for few kernel launches per step, which is what a small batch of envs costs on a GPU: each
        step's tensors are kept and stacked into the buffers once after the loop (one copy per buffer, not one
        per step); the episode counters are computed after the loop from the rewards and episode ends (a
        cumulative sum, not four ops a step); and unless the step is compiled, the envs' initial states for
        the resets of this rollout are drawn before it in one batch (``TorchVectorEnv.reset_pool``), each
        step picking its rows' by index instead of hashing fresh states for every row.
        """
        env = self.env
        state, elapsed, resets, seeds = env.state, env.elapsed, env.resets, env.seeds
        obs, obs_norm, rew_scale, discounted = self.obs, self.obs_normalizer, self.reward_scaler, self.discounted
        pool = env.reset_pool(seeds, resets, T) if self.reset_pool else None
        names = ("obs", "actions", "params", "values", "rewards", "terminated", "truncated", "final_obs")
        kept: dict[str, list[torch.Tensor]] = {k: [] for k in names}
        env_rewards = []  # the env's own rewards, for the episode returns, where the rollout's are scaled
        for t in range(T):
            action, params, values = step(obs, b["noise"][t])  # a_t ~ π_old(·|s_t), and V_old(s_t)
            kept["obs"].append(obs)
            # Box actions reach the env clipped to its bounds; the buffer keeps the sample π drew (lucidrl.rollout)
            env_action = action if self.action_bounds is None else torch.clamp(action, *self.action_bounds)
            state, elapsed, resets, obs, reward, terminated, truncated, final_obs = self._env_step(
                state, elapsed, seeds, resets, env_action, pool
            )
            if obs_norm is not None:  # the step's observations update the statistics, then both are normalised
                obs_norm.update(obs)
                obs, final_obs = obs_norm(obs), obs_norm(final_obs)
            if rew_scale is not None:
                env_rewards.append(reward)
                reward, discounted = rew_scale.scale_on_device(reward, terminated | truncated, discounted)
            for k, x in zip(names[1:], (action, params, values, reward, terminated, truncated, final_obs)):
                kept[k].append(x)  # final_obs: the true s_{t+1} of every row
        for k in names:
            torch.stack(kept[k], out=b[k])
        self._episode_counters(b, T, torch.stack(env_rewards) if env_rewards else b["rewards"])
        self.discounted.copy_(discounted)
        # carry the envs, the observation and the episode counters to the next rollout
        env.state.copy_(state)  # in place: a CUDA graph replays on these very tensors
        env.elapsed.copy_(elapsed)
        env.resets.copy_(resets)
        self.obs.copy_(obs)
        # V_old(s_{t+1}) of the true next state of every transition, in one batched pass
        b["next_values"].copy_(step(b["final_obs"].flatten(0, 1), None)[2].view(T, -1))
        b["logprob"].copy_(agent.head.log_prob(b["params"], b["actions"]))  # one batched op, not one per step

    def _episode_counters(self, b: dict[str, torch.Tensor], T: int, rewards: torch.Tensor) -> None:
        """The return and length of each row's episode so far after every step (``b["ep_return"]``,
        ``b["ep_length"]``), and the counters carried into the next rollout.

        With C_t = (return carried in) + r_0 + ... + r_t and τ the last step before t at which the row's episode
        ended (none: the episode began before this rollout), the episode's return after step t is C_t - C_τ
        (C_t without an earlier end) and its length t - τ (t + 1 + the length carried in)."""
        done = b["terminated"] | b["truncated"]
        steps = torch.arange(T, device=self.device).unsqueeze(1)
        C = torch.cumsum(rewards, 0, dtype=torch.float64).add_(self.ep_return)
        last_end = torch.where(done, steps, -1).cummax(0).values  # the last end at or before t
        before = torch.cat([last_end.new_full((1, self.n_envs), -1), last_end[:-1]])  # ... strictly before t
        began_before = before < 0
        torch.sub(C, torch.where(began_before, 0.0, C.gather(0, before.clamp(min=0))), out=b["ep_return"])
        torch.sub(steps, before, out=b["ep_length"]).add_(torch.where(began_before, self.ep_length, 0))
        self.ep_return.copy_(torch.where(done[-1], 0.0, b["ep_return"][-1]))
        self.ep_length.copy_(torch.where(done[-1], 0, b["ep_length"][-1]))

    @torch.no_grad()
    def collect(self, agent: ActorCritic, n_steps: int) -> Rollout:
        T = n_steps
        # a graph replays on fixed tensors: a reset that replaced the env's tensors means a new capture
        key = (id(agent), T, *(x.data_ptr() for x in (*self._carried(), self.env.seeds)))
        if self._buffers is None or self._graph_key != key:
            self._buffers, self._graph, self._graph_key = self.allocate(agent, T), None, key
        b = self._buffers
        # the rollout's noise, from the model's generator (the same stream as RolloutCollector's)
        b["noise"].copy_(agent.head.noise((T, self.n_envs), self.generator, self.device))
        if self.cuda_graph:
            if self._graph is None:
                self._graph = self._capture(agent, b, T)
            self._graph.replay()
        else:
            self.run(agent, self._step(agent), b, T)
        return self._rollout(b)

    def _step(self, agent: ActorCritic):
        step = self.policy(agent)
        return torch.compile(step, dynamic=False) if self.compile_step else step

    def _capture(self, agent: ActorCritic, b: dict[str, torch.Tensor], T: int) -> torch.cuda.CUDAGraph:
        """Record the rollout as a CUDA graph. Warm-up runs (needed before a capture) step the envs: their
        state is saved first and restored after, so the captured run starts where an eager one would."""
        saved = [x.clone() for x in self._carried()]
        step = self._step(agent)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self.run(agent, step, b, T)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.run(agent, step, b, T)
        for dst, src in zip(self._carried(), saved):
            dst.copy_(src)
        return graph

    def _carried(self) -> list[torch.Tensor]:
        """What a rollout reads and changes in place besides its buffers: the envs, the observation, the
        episode counters and the normalisers' statistics."""
        env = self.env
        out = [env.state, env.elapsed, env.resets, self.obs, self.ep_return, self.ep_length, self.discounted]
        for norm in (self.obs_normalizer, self.reward_scaler):
            if norm is not None:
                out += [norm.rms.mean, norm.rms.var, norm.rms.count]
        return out

    def _rollout(self, b: dict[str, torch.Tensor]) -> Rollout:
        # the only host transfer of the rollout: the returns and lengths of the latest episodes that ended
        # (time-major order), as many as the logger's means read (RECENT_EPISODES): early in a rollout of
        # 262,144 envs x 128 steps ~1.5M episodes end, and turning all of them into Python floats cost more
        # than the update's GPU work
        ends = (b["terminated"] | b["truncated"]).flatten().nonzero().squeeze(1)[-RECENT_EPISODES:]
        ended = torch.cat([b["ep_return"].flatten()[ends], b["ep_length"].flatten()[ends].double()]).tolist()
        n = len(ended) // 2
        if self.reward_scaler is not None:  # the returns in flight, where a checkpoint saves them from
            self.reward_scaler.returns = self.discounted.cpu().numpy().copy()
        return Rollout(
            obs=b["obs"],
            actions=b["actions"],
            rewards=b["rewards"],
            terminated=b["terminated"],
            truncated=b["truncated"],
            values_old=b["values"],
            next_values=b["next_values"],
            logprob_old=b["logprob"],
            params_old=b["params"],
            valid=None,
            episode_returns=ended[:n],
            episode_lengths=[int(x) for x in ended[n:]],
        )


@torch.no_grad()
def evaluate_on_device(
    model, n_episodes: int = 128, deterministic: bool = True, seed: int = 10_000
) -> tuple[float, float]:
    """Mean and std of the returns of ``n_episodes`` episodes played at once in a batched torch env on the
    model's device: one episode per env, each played to its end or the time limit.

    Each episode is played once, so no env resets: the step is the env's own dynamics (``env.dynamics``) without
    ``functional_step``'s autoreset, and the loop ends at the time limit or, checked every 50 steps (one host
    read), when every episode has ended."""
    from lucidrl.envs.torch import make_torch_vec_env

    env = make_torch_vec_env(model.env_id, n_episodes, device=model.device, seed=seed)
    agent, head, obs_norm = model.agent, model.agent.head, model.obs_normalizer
    env.reset(seed=seed)
    state, bounds = env.state, box_bounds(env, model.device)
    total = torch.zeros(n_episodes, dtype=torch.float64, device=model.device)
    running = torch.ones(n_episodes, dtype=torch.bool, device=model.device)
    for t in range(env.max_episode_steps):  # the time limit ends the episodes still running
        obs = env.observation(state)
        params = agent.policy_params(obs if obs_norm is None else obs_norm(obs))  # frozen statistics
        action = head.mode(params) if deterministic else head.sample(params)
        if bounds is not None:
            action = torch.clamp(action, *bounds)
        state, reward, terminated = env.dynamics(state, action)
        total += torch.where(running, reward.double(), 0.0)  # the reward of the last step counts
        running &= ~terminated
        if t % 50 == 49 and not bool(running.any()):
            break
    return float(total.mean()), float(total.std(unbiased=False))
