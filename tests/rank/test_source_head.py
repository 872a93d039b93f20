"""The source model's own classifier, read from a checkpoint (what LEEP and NCE apply)."""

from __future__ import annotations

import torch
import torch.nn as nn

from tlbench.models.source_head import head_from_state


def test_a_linear_head_is_rebuilt_with_its_weights():
    w, b = torch.randn(5, 8), torch.randn(5)
    head, why = head_from_state({"stem.weight": torch.ones(1), "fc.weight": w, "fc.bias": b}, ("fc",), 8, "f")
    assert why == "" and isinstance(head, nn.Linear)
    x = torch.randn(3, 8)
    assert torch.allclose(head(x), x @ w.T + b)


def test_an_mlp_head_is_rebuilt_with_relu_between():
    w0, b0, w1, b1 = torch.randn(6, 8), torch.randn(6), torch.randn(4, 6), torch.randn(4)
    state = {"head.fc.0.weight": w0, "head.fc.0.bias": b0, "head.fc.3.weight": w1, "head.fc.3.bias": b1}
    head, why = head_from_state(state, ("head.fc",), 8, "f")
    assert why == ""
    x = torch.randn(2, 8)
    assert torch.allclose(head(x), torch.relu(x @ w0.T + b0) @ w1.T + b1)


def test_no_head_or_a_misfit_one_says_why():
    head, why = head_from_state({"stem.weight": torch.ones(1)}, ("fc",), 8, "ckpt.safetensors")
    assert head is None and "keeps no classifier" in why and "ckpt.safetensors" in why
    head, why = head_from_state({"fc.weight": torch.randn(5, 7)}, ("fc",), 8, "f")
    assert head is None and "takes 7 features" in why
