"""The training loss through the LM head, at the answer positions only, in one fused step.

Gemma 3's vocabulary has 262,144 tokens: at a few hundred answer positions a step, the
logits are over a hundred million numbers. torch's cross-entropy copies them to fp32, takes
their log-softmax, then allocates its gradient and a zero-filled scatter for the targets:
on 2 CPU cores those passes over fresh memory took longer than the head's matmuls. Here the
logits stay in the matmul's dtype (bf16 under autocast), the log-sum-exp is taken in fp32 a
few rows at a time (small buffers, reused), and the backward pass turns the saved logits
into their own gradient in place before one matmul back to the hidden states.

The head weight is frozen (LoRA trains the projections only; Gemma ties it to the embedding),
so the backward pass returns a gradient for the hidden states alone.
"""

from __future__ import annotations

import torch

ROWS_PER_CHUNK = 16  # 16 × 262,144 fp32 values = 16 MB: small enough for the allocator to reuse


class _HeadCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, softcap):
        logits = hidden @ weight.T
        log_normaliser = torch.empty(logits.shape[0], dtype=torch.float32)
        picked = torch.empty(logits.shape[0], dtype=torch.float32)
        work = _work_buffer(logits)
        for rows in _chunks(logits.shape[0]):
            chunk = _capped(work[: rows.stop - rows.start].copy_(logits[rows]), softcap)
            picked[rows] = chunk.gather(1, targets[rows, None])[:, 0]
            peak = chunk.amax(dim=-1, keepdim=True)
            log_normaliser[rows] = peak[:, 0] + chunk.sub_(peak).exp_().sum(dim=-1).log_()
        ctx.save_for_backward(hidden, weight, targets, logits, log_normaliser)
        ctx.softcap = softcap
        return (log_normaliser - picked).sum()

    @staticmethod
    def backward(ctx, grad_loss):
        hidden, weight, targets, logits, log_normaliser = ctx.saved_tensors
        scale = float(grad_loss)
        work = _work_buffer(logits)
        for rows in _chunks(logits.shape[0]):
            raw = work[: rows.stop - rows.start].copy_(logits[rows])
            slope = 1 - torch.tanh(raw / ctx.softcap) ** 2 if ctx.softcap else None  # d capped / d logit
            grad = _capped(raw, ctx.softcap).sub_(log_normaliser[rows, None]).exp_()  # the softmax
            grad[torch.arange(grad.shape[0]), targets[rows]] -= 1
            if slope is not None:
                grad.mul_(slope)
            logits[rows] = grad.mul_(scale)  # the saved logits become their own gradient
        return logits @ weight, None, None, None


def _work_buffer(logits: torch.Tensor) -> torch.Tensor:
    """One fp32 buffer for every chunk: a fresh 16 MB allocation per chunk costs its page
    faults each time (measured: a copy into fresh memory ran 5× slower than into reused)."""
    return torch.empty(min(ROWS_PER_CHUNK, logits.shape[0]), logits.shape[1], dtype=torch.float32)


def _capped(logits: torch.Tensor, softcap: float | None) -> torch.Tensor:
    """Gemma 2's final softcap, in place."""
    return logits.div_(softcap).tanh_().mul_(softcap) if softcap else logits


def _chunks(n: int):
    return (slice(start, min(start + ROWS_PER_CHUNK, n)) for start in range(0, n, ROWS_PER_CHUNK))


def answer_cross_entropy(hidden: torch.Tensor, head_weight: torch.Tensor, targets: torch.Tensor,
                         softcap: float | None = None) -> torch.Tensor:
    """Sum over positions of cross_entropy(hidden @ head_weight.T, targets), softcapped like
    Gemma 2 when `softcap` is set. hidden: [N, H]; head_weight: [V, H], frozen, cast to the
    hidden states' dtype; targets: [N]."""
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0
    return _HeadCrossEntropy.apply(hidden, head_weight.detach().to(hidden.dtype), targets, softcap)
