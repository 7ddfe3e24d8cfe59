"""Closed-form batched gradients for ReLU MLPs under cross-entropy.

``torch.func.vmap(grad(...))`` works for any model but, for the small MLPs that
decentralized-learning experiments run by the thousand, most of its time goes to
ops that are slow at these shapes: a log-softmax over a last dimension of ten
classes, per-slot gradient tensors, broadcasting masks. For a plain
``Sequential([Flatten], Linear, ReLU, ..., Linear)`` the backward pass is short
enough to write out, and doing so in a *feature-major* layout (activations of
shape ``(N, features, B)``, so the class dimension of the softmax is not the
innermost one) halves the cost of a local step.

For a batch of ``B`` samples, ``z_1 = W_1 x + b_1``, ``a_l = relu(z_l)``,
``z_{l+1} = W_{l+1} a_l + b_{l+1}`` and loss
``L = (1/B) sum_b [logsumexp(z_L[:, b]) - z_L[y_b, b]]``. Backward:
``delta_L = (softmax(z_L) - onehot(y)) / B``, ``grad W_l = delta_l a_{l-1}^T``,
``grad b_l = sum_b delta_l``, ``delta_{l-1} = (W_l^T delta_l) * [z_{l-1} > 0]``.

:meth:`ReluMLP.match` recognizes such a module from its structure and its
:class:`~p2pfl.params.ParamLayout`; anything else (buffers, frozen parameters,
other layers, a ``Flatten`` with other dimensions) is left to the generic path.
Tests check the gradients against autograd.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from p2pfl.params import ParamLayout


@dataclass(frozen=True)
class LinearSlots:
    """Where one ``nn.Linear``'s weight ``(out, in)`` and bias ``(out,)`` live in the flat vector."""

    weight: int
    bias: int
    out_features: int
    in_features: int


@dataclass(frozen=True)
class ReluMLP:
    """A recognized ReLU MLP: its linear layers in order, and whether it flattens its input."""

    layers: tuple[LinearSlots, ...]
    flattens: bool
    size: int

    @classmethod
    def match(cls, model: nn.Module, layout: ParamLayout) -> ReluMLP | None:
        """The MLP structure of ``model``, or ``None`` if it is anything else."""
        if not isinstance(model, nn.Sequential) or len(model) == 0:
            return None
        modules = list(model)
        flattens = isinstance(modules[0], nn.Flatten)
        if flattens:
            flat = modules[0]
            assert isinstance(flat, nn.Flatten)
            if (flat.start_dim, flat.end_dim) != (1, -1):
                return None
            modules = modules[1:]
        # Linear, then (ReLU, Linear) pairs: odd length, alternating.
        if len(modules) % 2 == 0:
            return None
        linears = modules[0::2]
        relus = modules[1::2]
        if not all(type(m) is nn.Linear and m.bias is not None for m in linears):
            return None
        if not all(type(m) is nn.ReLU for m in relus):
            return None
        slots = {s.name: s for s in layout.slots}
        offset = 1 if flattens else 0
        layers = []
        for k, lin in enumerate(linears):
            assert isinstance(lin, nn.Linear)
            w = slots.get(f"{offset + 2 * k}.weight")
            b = slots.get(f"{offset + 2 * k}.bias")
            if w is None or b is None:
                return None
            layers.append(LinearSlots(w.offset, b.offset, lin.out_features, lin.in_features))
        covered = {f"{offset + 2 * k}.{p}" for k in range(len(linears)) for p in ("weight", "bias")}
        # Every state entry must be one of these trainable float32 parameters: no buffers.
        if set(slots) != covered or not all(
            s.trainable and s.dtype == torch.float32 for s in layout.slots
        ):
            return None
        return cls(tuple(layers), flattens, layout.size)

    def accepts(self, x: Tensor) -> bool:
        """Whether per-node batches ``x`` of shape ``(N, B, ...)`` fit this path."""
        return x.dtype == torch.float32 and (self.flattens or x.ndim == 3)

    def loss_and_grads(self, params: Tensor, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Per-node gradients ``(N, d)`` and mean cross-entropy ``(N,)``.

        ``params`` is ``(N, d)``; ``x`` is ``(N, B, ...)`` and ``y`` ``(N, B)``
        int64 class indices.
        """
        fw = self._forward(params, x)
        target = y.unsqueeze(1)
        loss = -fw.log_probs.gather(1, target).mean((1, 2))
        # Backward: delta = (softmax - onehot) / B, then through the layers.
        delta = fw.log_probs.exp_()
        delta.scatter_add_(1, target, torch.full_like(target, -1, dtype=delta.dtype))
        delta.mul_(1.0 / y.shape[1])
        return self._grads(fw, self._deltas(fw, delta)), loss

    def clipped_grad_sum(
        self, params: Tensor, x: Tensor, y: Tensor, weight: Tensor, clip_norm: float
    ) -> tuple[Tensor, Tensor]:
        """``sum_b weight[:, b] * clip(g_b, C)`` ``(N, d)`` and ``sum_b weight[:, b] * loss_b`` ``(N,)``.

        ``g_b`` is sample ``b``'s own gradient, ``clip(g, C) = g * min(1, C / ||g||)``
        (DP-SGD's per-example clipping). No per-sample gradient is formed: the
        gradient of sample ``b`` is ``delta_{l,b} a_{l-1,b}^T`` (weights) and
        ``delta_{l,b}`` (biases) in every layer ``l``, so ``||g_b||^2 =
        sum_l ||delta_{l,b}||^2 (||a_{l-1,b}||^2 + 1)``, and the clipped sum is the
        ordinary backward with each sample's deltas scaled by its factor (the
        "ghost clipping" of Goodfellow 2015 and Li et al. 2022). ``weight`` is
        ``(N, B)`` (0/1 marks the samples of a padded batch).
        """
        fw = self._forward(params, x)
        target = y.unsqueeze(1)
        losses = -fw.log_probs.gather(1, target).squeeze(1)  # (N, B)
        delta = fw.log_probs.exp_()
        delta.scatter_add_(1, target, torch.full_like(target, -1, dtype=delta.dtype))
        deltas = self._deltas(fw, delta)
        sq = torch.zeros_like(losses)
        for k, d in enumerate(deltas):
            inputs_sq = fw.acts[k].square().sum(1) + 1.0  # (N, B): ||a_{k-1}||^2 + 1 (bias)
            sq += d.square().sum(1) * inputs_sq
        scale = (clip_norm / sq.sqrt()).clamp(max=1.0) * weight  # 1/0 -> inf -> 1
        scaled = [d * scale.unsqueeze(1) for d in deltas]
        return self._grads(fw, scaled), (losses * weight).sum(1)

    def _forward(self, params: Tensor, x: Tensor) -> _Pass:
        """The forward pass, feature-major: ``z_l`` and ``a_l`` are ``(N, features, B)``."""
        n, batch = x.shape[0], x.shape[1]
        inputs = x.reshape(n, batch, -1)  # (N, B, in): sample-major, as stored
        weights = [
            params[:, s.weight : s.weight + s.out_features * s.in_features].view(
                n, s.out_features, s.in_features
            )
            for s in self.layers
        ]
        biases = [params[:, s.bias : s.bias + s.out_features] for s in self.layers]
        pre: list[Tensor] = []
        act = inputs.transpose(1, 2)
        acts = [act]
        for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
            z = torch.baddbmm(b.unsqueeze(2), w, act)
            if k + 1 < len(weights):
                pre.append(z)
                act = z.clamp_min(0)
                acts.append(act)
            else:
                act = z
        log_probs = act.log_softmax(1)  # (N, C, B): reduction over a non-inner dim
        return _Pass(inputs, weights, pre, acts, log_probs)

    def _deltas(self, fw: _Pass, delta: Tensor) -> list[Tensor]:
        """``delta_l`` ``(N, out_l, B)`` of every layer, from the output layer's ``delta``."""
        out = [delta]
        for k in range(len(self.layers) - 1, 0, -1):
            back = torch.bmm(fw.weights[k].transpose(1, 2), delta)
            delta = torch.ops.aten.threshold_backward(back, fw.pre[k - 1], 0.0)
            out.append(delta)
        return out[::-1]

    def _grads(self, fw: _Pass, deltas: list[Tensor]) -> Tensor:
        """``(N, d)``: ``grad W_l = delta_l a_{l-1}^T``, ``grad b_l = sum_b delta_l``."""
        n = fw.inputs.shape[0]
        grads = fw.inputs.new_empty((n, self.size))
        for k, s in enumerate(self.layers):
            # a_0 is the input, already (N, B, in).
            prev_t = fw.inputs if k == 0 else fw.acts[k].transpose(1, 2)
            gw = grads[:, s.weight : s.weight + s.out_features * s.in_features]
            gw.copy_(torch.bmm(deltas[k], prev_t).view(n, -1))
            torch.sum(deltas[k], 2, out=grads[:, s.bias : s.bias + s.out_features])
        return grads


@dataclass(frozen=True)
class _Pass:
    """What the backward pass needs from the forward one."""

    inputs: Tensor  # (N, B, in)
    weights: list[Tensor]  # (N, out, in) per layer
    pre: list[Tensor]  # pre-activations of the hidden layers, (N, out, B)
    acts: list[Tensor]  # inputs of each layer, feature-major (N, in, B)
    log_probs: Tensor  # (N, C, B)
