"""One file per algorithm; importing this package registers them all with ``lucidrl.load``."""

from lucidrl.algos.ppo import PPO, PPOConfig

__all__ = ["PPO", "PPOConfig"]
