"""BatchNorm rebuilt around a convolution an ONNX export folded it into.

A BatchNorm in training mode normalises by the batch's own statistics, so setting it to the identity after
the folded convolution would change the function as soon as training starts. Instead each one is given the
mean and spread its convolution actually produces on real inputs (`refit_batchnorm`): then it reproduces the
fused convolution exactly in eval mode and closely in training mode.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn


def identity_norm_state(prefix: str, norm: nn.BatchNorm2d, bias: Tensor) -> dict[str, Tensor]:
    """State of `norm` (named `prefix`) that passes its input through, adding the folded conv's `bias`."""
    return {f"{prefix}.weight": torch.ones_like(bias), f"{prefix}.bias": bias,
            f"{prefix}.running_mean": torch.zeros_like(bias),
            f"{prefix}.running_var": torch.full_like(bias, 1.0 - norm.eps)}


@torch.no_grad()
def refit_batchnorm(norms: Mapping[str, nn.BatchNorm2d], feed: Callable[[], None]) -> None:
    """Give each BatchNorm of `norms` the per-channel mean and variance of its input over what `feed` runs
    through the model (in eval mode), keeping its eval-mode function: gamma and beta absorb the change of
    statistics. Then training mode on such inputs computes nearly what eval mode does."""
    sums = {name: torch.zeros(2, norm.num_features, dtype=torch.float64) for name, norm in norms.items()}
    counts = dict.fromkeys(norms, 0)
    hooks = []
    for name, norm in norms.items():
        def record(_: nn.Module, inputs: tuple[Tensor, ...], name: str = name) -> None:
            flat = inputs[0].double().transpose(0, 1).flatten(1)  # (C, B*H*W)
            sums[name] += torch.stack([flat.sum(1), (flat * flat).sum(1)])
            counts[name] += flat.shape[1]
        hooks.append(norm.register_forward_pre_hook(record))
    try:
        feed()
    finally:
        for hook in hooks:
            hook.remove()
    for name, norm in norms.items():
        if not counts[name]:
            raise ValueError(f"{name} saw no input while measuring BatchNorm statistics")
        mean, mean_square = sums[name] / counts[name]
        var = torch.clamp(mean_square - mean * mean, min=1e-6)
        old_std = torch.sqrt(norm.running_var.double() + norm.eps)
        gamma = norm.weight.double()
        norm.bias.copy_((norm.bias.double() + gamma * (mean - norm.running_mean.double()) / old_std).float())
        norm.weight.copy_((gamma * torch.sqrt(var + norm.eps) / old_std).float())
        norm.running_mean.copy_(mean.float())
        norm.running_var.copy_(var.float())
