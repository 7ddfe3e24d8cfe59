"""Sequential convolutional networks for many nodes at once, as grouped convolutions.

``vmap`` of ``functional_call`` trains any module for N nodes at once, and torch's
batching rule already runs N per-node ``Conv2d`` layers as one convolution with
``groups = N``. What it does not choose is the memory layout around them: on small
images (8x8 digits) the activations stay in NCHW, where max pooling over planes of
a few pixels costs more than the convolutions, and the N-node tensors are too big
for the CPU's caches. For a plain ``nn.Sequential`` of the layers below,
:class:`GroupedSequential` runs the forward pass itself:

- convolutional stage: activations ``(B, N*C, H, W)`` in channels-last memory, the
  nodes' channels side by side; ``Conv2d(C, O, groups=g)`` of node k is the k-th
  group block of one ``conv2d(..., groups=N*g)`` whose weight stacks the nodes'
  ``(O, C/g, kh, kw)`` weights; pooling and activations act per channel, so they
  run on the whole tensor unchanged;
- ``Flatten`` turns ``(B, N*C, H, W)`` into ``(N, B, C*H*W)`` (each node's features
  in NCHW order, as its own ``Flatten`` would);
- dense stage: ``Linear`` of node k is ``x_k W_k^T + b_k``, one ``baddbmm``.

``ReLU`` directly before ``MaxPool2d`` runs after it: ``max(relu(x)) = relu(max(x))``
exactly, and the gradients agree too (a window whose maximum is <= 0 gets no
gradient either way; otherwise both route it to the first maximal position), so
the ReLU and its backward touch a quarter of the values.

Callers split the nodes into chunks whose widest activation stays near the CPU's
caches (:meth:`GroupedSequential.chunk`). Every node's result depends on its own
weights and inputs only, so the numbers are those of a per-node loop up to float
rounding (tests check against one). Anything else (buffers such as BatchNorm's,
other layer types, a ``Linear`` before ``Flatten``, subclasses with their own
``forward``) is left to the generic ``vmap`` path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Per-channel (or per-value) layers that run unchanged on ``(B, N*C, H, W)`` or ``(N, B, F)``.
ELEMENTWISE = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Identity,
)
POOLING = (
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)

#: Widest activation of one chunk of nodes, in bytes: measured on a 2-core x86 machine,
#: 2-4 MiB chunks train the built-in CNN 1.5x faster per step than all 64 nodes at once.
CHUNK_BYTES = 4 << 20


@dataclass(frozen=True)
class Layer:
    """One layer of the matched model: its module and, for Conv2d/Linear, its state names."""

    module: nn.Module
    weight: str = ""
    bias: str = ""


def _leaves(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]] | None:
    """The layers of nested plain ``nn.Sequential`` containers, in order, with their names."""
    if type(model) is not nn.Sequential:
        return None
    out: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if type(child) is nn.Sequential:
            inner = _leaves(child, f"{prefix}{name}.")
            if inner is None:
                return None
            out += inner
        else:
            out.append((f"{prefix}{name}", child))
    return out


class GroupedSequential:
    """A recognized sequential conv net (see the module docstring)."""

    def __init__(self, layers: list[Layer], shapes: dict[str, tuple[int, ...]]) -> None:
        self.layers = tuple(layers)
        self.shapes = shapes  # unbatched shape of every weight and bias
        self._widest: dict[tuple[int, ...], int] = {}

    @classmethod
    def match(cls, model: nn.Module) -> GroupedSequential | None:
        """The layers of ``model`` if it is a sequential conv net this module runs, else None."""
        leaves = _leaves(model)
        if not leaves or next(model.buffers(), None) is not None:
            return None
        layers: list[Layer] = []
        flat = False  # past Flatten: the dense stage
        convs = 0
        for name, m in leaves:
            if (type(m) is nn.Conv2d and not flat) or (type(m) is nn.Linear and flat):
                if isinstance(m, nn.Conv2d):
                    if m.padding_mode != "zeros":
                        return None
                    convs += 1
                bias = f"{name}.bias" if getattr(m, "bias", None) is not None else ""
                layers.append(Layer(m, f"{name}.weight", bias))
            elif type(m) is nn.Flatten and not flat:
                if (m.start_dim, m.end_dim) != (1, -1):
                    return None
                flat = True
                layers.append(Layer(m))
            elif type(m) in POOLING and not flat:
                if getattr(m, "return_indices", False):
                    return None
                layers.append(Layer(m))
            elif type(m) in ELEMENTWISE:
                layers.append(Layer(m))
            else:
                return None
        if convs == 0 or not flat:
            return None
        # ReLU then MaxPool2d -> MaxPool2d then ReLU (exact, see the module docstring).
        for k in range(len(layers) - 1):
            if type(layers[k].module) is nn.ReLU and type(layers[k + 1].module) is nn.MaxPool2d:
                layers[k], layers[k + 1] = layers[k + 1], layers[k]
        shapes = {name: tuple(t.shape) for name, t in model.named_parameters()}
        return cls(layers, shapes)

    @staticmethod
    def accepts(x: Tensor, per_node: bool) -> bool:
        """Whether ``x`` holds images: ``(N, B, C, H, W)`` per node, ``(T, C, H, W)`` shared."""
        return x.dim() == (5 if per_node else 4)

    def _node_major(self, state: Mapping[str, Tensor], name: str, n: int) -> Tensor:
        """``name`` as ``(N, *shape)``: one per node, or a frozen, shared one repeated."""
        t = state[name]
        shape = self.shapes[name]
        return t.expand(n, *shape) if t.dim() == len(shape) else t

    def _apply(self, layer: Layer, h: Tensor, state: Mapping[str, Tensor], n: int) -> Tensor:
        m = layer.module
        if isinstance(m, nn.Conv2d):
            # node k's (O, C/g, kh, kw) weight is the k-th block of an (N*O, C/g, kh, kw) one
            w = self._node_major(state, layer.weight, n).flatten(0, 1)
            b = self._node_major(state, layer.bias, n).reshape(-1) if layer.bias else None
            return F.conv2d(h, w, b, m.stride, m.padding, m.dilation, n * m.groups)
        if isinstance(m, nn.Linear):
            w = self._node_major(state, layer.weight, n).transpose(1, 2)
            if not layer.bias:
                return torch.bmm(h, w)
            return torch.baddbmm(self._node_major(state, layer.bias, n).unsqueeze(1), h, w)
        if isinstance(m, nn.Flatten):  # (B, N*C, H, W) -> (N, B, C*H*W)
            return h.reshape(h.shape[0], n, -1).transpose(0, 1)
        return m(h)

    def forward(self, state: Mapping[str, Tensor], x: Tensor, n: int) -> Tensor:
        """Logits ``(N, B, classes)``.

        ``state`` maps each parameter name to ``(N, *shape)`` (one per node) or to
        ``shape`` (frozen: shared); ``x`` is ``(N, B, C, H, W)`` (each node its own
        batch) or ``(B, C, H, W)`` (one batch for all).
        """
        if x.dim() == 5:
            _, b, c, hh, ww = x.shape
            h = x.transpose(0, 1).reshape(b, n * c, hh, ww)
        else:
            h = x.repeat(1, n, 1, 1)
        h = h.contiguous(memory_format=torch.channels_last)
        for layer in self.layers:
            h = self._apply(layer, h, state, n)
        return h

    def chunk(self, sample_shape: tuple[int, ...], batch: int) -> int:
        """How many nodes to run at once so that the widest activation stays within
        :data:`CHUNK_BYTES` (at least one)."""
        if sample_shape not in self._widest:
            self._widest[sample_shape] = self._widest_of(sample_shape)
        return max(1, CHUNK_BYTES // max(1, 4 * batch * self._widest[sample_shape]))

    def _widest_of(self, sample_shape: tuple[int, ...]) -> int:
        """Values per sample of one node's widest activation (shapes on the meta device)."""
        state = {name: torch.empty(s, device="meta") for name, s in self.shapes.items()}
        h = torch.empty(1, *sample_shape, device="meta")
        widest = math.prod(sample_shape)
        for layer in self.layers:
            h = self._apply(layer, h, state, 1)
            widest = max(widest, math.prod(h.shape[1:]) if h.dim() == 4 else h.shape[-1])
        return widest
