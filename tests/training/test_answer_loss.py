"""The fused LM-head loss equals torch's cross-entropy, value and gradient, in chunks and
with Gemma 2's softcap."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from dziri.training.answer_loss import ROWS_PER_CHUNK, answer_cross_entropy  # noqa: E402


@pytest.mark.parametrize("rows", [1, ROWS_PER_CHUNK, 3 * ROWS_PER_CHUNK + 5])
@pytest.mark.parametrize("softcap", [None, 5.0])
def test_value_and_gradient_match_torch_cross_entropy(rows, softcap):
    generator = torch.Generator().manual_seed(rows)
    hidden = torch.randn(rows, 24, dtype=torch.float64, generator=generator, requires_grad=True)
    weight = torch.randn(300, 24, dtype=torch.float64, generator=generator)
    targets = torch.randint(0, 300, (rows,), generator=generator)
    ours = answer_cross_entropy(hidden, weight, targets, softcap)
    (grad_ours,) = torch.autograd.grad(ours * 0.5, hidden)
    logits = hidden @ weight.T
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    reference = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    (grad_reference,) = torch.autograd.grad(reference * 0.5, hidden)
    assert torch.allclose(ours.double(), reference, rtol=1e-5)
    assert torch.allclose(grad_ours, grad_reference, rtol=1e-4, atol=1e-6)  # fp32 log-sum-exp


def test_bf16_hidden_states_keep_the_loss_close():
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(40, 64, generator=generator)
    weight = torch.randn(1000, 64, generator=generator) * 0.1
    targets = torch.randint(0, 1000, (40,), generator=generator)
    full = answer_cross_entropy(hidden, weight, targets)
    half = answer_cross_entropy(hidden.bfloat16(), weight, targets)
    assert half.dtype == torch.float32
    assert abs(float(half) / float(full) - 1) < 0.01


def test_no_answer_positions_is_a_zero_loss_with_a_gradient():
    hidden = torch.zeros(0, 8, requires_grad=True)
    loss = answer_cross_entropy(hidden, torch.zeros(10, 8), torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert float(loss) == 0.0
