"""A small causal transformer language model, the policy π_θ of GRPO on the toy text tasks.

``CausalLM`` maps a (B, T) batch of token ids to next-token logits (B, T, V): token and learned
position embeddings, ``n_layers`` pre-norm ``nn.TransformerEncoderLayer`` blocks under a causal
mask (each position sees itself and the positions before it), a final LayerNorm and a linear head.
Plain ``torch.nn``; no KV cache (the sequences here are ~10 tokens, recomputing is cheaper to read).

* ``sample(prompts, max_new_tokens, generator, temperature)`` generates completions token by
  token; after a sequence emits EOS its later positions are PAD and masked out.
* ``logprobs(prompts, completions, temperature)`` is the training forward: log π_θ(o_t | q, o_<t)
  of every completion token in one pass (teacher forcing).
* ``supervised_warm_start`` is the "SFT" stage: cross-entropy on correct (prompt, answer) pairs
  of a task's training split.
"""

from __future__ import annotations

import torch
from torch import nn

from lucidrl.envs.text import EOS, PAD, TextTask


class CausalLM(nn.Module):
    causal_mask: torch.Tensor  # a buffer (register_buffer), declared for the type checker

    def __init__(self, vocab_size: int, max_len: int, d_model: int = 64, n_layers: int = 2, n_heads: int = 4):
        super().__init__()
        self.max_len = max_len
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward=4 * d_model, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        mask = torch.triu(torch.full((max_len, max_len), float("-inf")), diagonal=1)
        self.register_buffer("causal_mask", mask, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        T = tokens.shape[1]
        h = self.tok(tokens) + self.pos(torch.arange(T, device=tokens.device))
        h = self.blocks(h, mask=self.causal_mask[:T, :T], is_causal=True)
        return self.head(self.norm(h))

    def logprobs(self, prompts: torch.Tensor, completions: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """(B, N) log π(o_t | q, o_<t) of each completion token (teacher forcing, one forward pass)."""
        P, N = prompts.shape[1], completions.shape[1]
        logits = self(torch.cat([prompts, completions[:, :-1]], dim=1))[:, P - 1 : P - 1 + N] / temperature
        return torch.log_softmax(logits, dim=-1).gather(-1, completions.unsqueeze(-1)).squeeze(-1)

    @torch.no_grad()
    def sample(
        self,
        prompts: torch.Tensor,
        max_new_tokens: int,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Completions (B, N), their log-probs (B, N) and mask (B, N): 1 up to and including the first
        EOS, 0 after it (those positions hold PAD). ``temperature=0``: greedy (log-probs at temperature 1)."""
        B = prompts.shape[0]
        seq, out, logps = prompts, [], []
        done = torch.zeros(B, dtype=torch.bool, device=prompts.device)
        mask = torch.zeros(B, max_new_tokens, device=prompts.device)
        for t in range(max_new_tokens):
            logits = self(seq)[:, -1]
            if temperature > 0:
                logp_all = torch.log_softmax(logits / temperature, dim=-1)
                tok = torch.multinomial(logp_all.exp(), 1, generator=generator).squeeze(-1)
            else:
                logp_all = torch.log_softmax(logits, dim=-1)
                tok = logits.argmax(-1)
            mask[:, t] = (~done).float()
            tok = torch.where(done, torch.full_like(tok, PAD), tok)
            logps.append(logp_all.gather(-1, tok.unsqueeze(-1)).squeeze(-1))
            out.append(tok)
            done = done | (tok == EOS)
            seq = torch.cat([seq, tok.unsqueeze(1)], dim=1)
            if bool(done.all()):
                mask = mask[:, : t + 1]
                break
        return torch.stack(out, 1), torch.stack(logps, 1) * mask, mask


def make_policy(task: TextTask, d_model: int = 64, n_layers: int = 2, n_heads: int = 4) -> CausalLM:
    return CausalLM(task.tokenizer.vocab_size, task.prompt_len + task.max_new_tokens, d_model, n_layers, n_heads)


def answer_batch(task: TextTask, prompts: list[str]) -> torch.Tensor:
    """The correct completions (answer + EOS), right-padded to ``task.max_new_tokens``."""
    return task.tokenizer.encode_batch([task.answer(p) for p in prompts], eos=True, length=task.max_new_tokens)


def supervised_warm_start(
    policy: CausalLM,
    task: TextTask,
    n_examples: int,
    steps: int,
    generator: torch.Generator,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
) -> float:
    """Cross-entropy on ``n_examples`` correct pairs of the training split for ``steps`` Adam steps
    (the "SFT" model RL starts from). Returns the last batch's loss."""
    prompts = task.sample_prompts(n_examples, generator, "train")
    q, o = task.encode_prompts(prompts), answer_batch(task, prompts)
    mask = (o != PAD).float()
    opt = torch.optim.Adam(policy.parameters(), lr=learning_rate)
    loss = torch.tensor(0.0)
    for _ in range(steps):
        idx = torch.randint(n_examples, (min(batch_size, n_examples),), generator=generator)
        logp = policy.logprobs(q[idx], o[idx])
        loss = -(logp * mask[idx]).sum() / mask[idx].sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach())


@torch.no_grad()
def accuracy(
    policy: CausalLM,
    task: TextTask,
    prompts: list[str],
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
) -> float:
    """Fraction of ``prompts`` answered exactly right (greedy decoding by default)."""
    comp, _, _ = policy.sample(task.encode_prompts(prompts), task.max_new_tokens, generator, temperature)
    rewards = [task.score(p, c) for p, c in zip(prompts, comp)]
    return sum(r == 1.0 for r in rewards) / len(prompts)
