"""lucidrl's fast CPU backend: the reference updates of ``lucidrl/algos/`` computed with their gradients written out.

Nothing here changes what an algorithm computes, only how: every function registered with
``lucidrl.backends`` has the signature and the results of a reference function, which
``tests/math/test_backends.py`` and ``test_backends_spaces.py`` check update by update. Importing this
package registers them (``lucidrl/__init__`` does, after the algorithms).

* ``mlp``: the one MLP core (forward, backward, forward-mode products; NumPy and torch);
* ``inputs``: what the core reads: flat float rows, or one-hot rows (Discrete, MultiDiscrete observations) kept
  as the columns of their ones, whose first-layer products are gathers and a scatter-add;
* ``flat``: weights and optimiser state as views of one flat tensor, and the optimiser's step on it;
* ``heads``: the action heads' log-probabilities with their gradients written out (categorical, MultiCategorical,
  Bernoulli, Gaussian), and the logit heads' sampling in NumPy;
* ``advantages``: GAE in NumPy;
* ``actor_critic``: PPO's and A2C's updates, and the rollouts' acting;
* ``trpo``, ``vpg``, ``dqn``: those algorithms' updates;
* ``compiled``: ``compile=True``: PPO's and A2C's reference updates compiled, and CUDA graphs on a GPU.
"""

from lucidrl.fast import actor_critic, advantages, compiled, dqn, trpo, vpg  # noqa: F401  (each registers its twins)
