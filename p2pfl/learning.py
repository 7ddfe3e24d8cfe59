"""Local training and evaluation as pure functions of flat parameter vectors.

Written once, vectorized over nodes (``torch.func``, or the closed-form
backward of :mod:`p2pfl.relu_mlp` for plain ReLU MLPs): the simulator calls them
with every node's parameters stacked in an ``(N, d)`` tensor, a node process with
a batch of one. The numbers agree because the minibatches come from
:func:`p2pfl.seeding.batch_indices` and every per-node computation is independent
of the others in the batch.

Local SGD (Lian et al. 2017, decentralized SGD; Koloskova et al. 2020 local steps):
for ``E`` steps, ``g = grad L(x; batch)``, ``g += wd * x`` on trainable
coordinates, ``m = mu * m + g``, ``x = x - lr * m`` (plain SGD when ``mu = 0``).

With DP-SGD (``TrainingSpec.privacy``, Abadi et al. 2016) ``g`` is instead
``(sum_e clip(g_e, C) + sigma C xi) / (q n)`` over a Poisson-sampled batch (rate
``q = min(1, B / n)`` for a shard of ``n`` examples), with ``g_e`` each example's
own gradient, ``clip(g, C) = g * min(1, C / ||g||)`` and ``xi ~ N(0, I)`` from the
node's seeded stream (:mod:`p2pfl.privacy.mechanism`); weight decay and momentum
follow as above (post-processing of the private gradient).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from p2pfl.grouped import GroupedSequential
from p2pfl.params import ParamLayout, flatten, frozen_names
from p2pfl.privacy.mechanism import DPSpec, NoiseStreams, poisson_batches, sample_rates
from p2pfl.relu_mlp import ReluMLP
from p2pfl.seeding import round_batch_indices


@dataclass(frozen=True)
class LocalData:
    """Every node's training shard, concatenated: node k owns rows ``offsets[k]:offsets[k]+sizes[k]``."""

    x: torch.Tensor  # (total, *input_shape) float32
    y: torch.Tensor  # (total,) int64
    offsets: torch.Tensor  # (N,) int64
    sizes: torch.Tensor  # (N,) int64

    @classmethod
    def from_shards(cls, shards: list[tuple[torch.Tensor, torch.Tensor]]) -> LocalData:
        sizes = torch.tensor([len(y) for _, y in shards], dtype=torch.int64)
        if len(shards) == 0 or int(sizes.min()) < 1:
            raise ValueError("every node needs at least one training sample")
        offsets = torch.cumsum(sizes, 0) - sizes
        x = torch.cat([x for x, _ in shards])
        y = torch.cat([y for _, y in shards])
        return cls(x, y, offsets, sizes)

    def to(self, device: torch.device) -> LocalData:
        """The samples on ``device`` (offsets and sizes, which only index, stay on the CPU)."""
        return LocalData(self.x.to(device), self.y.to(device), self.offsets, self.sizes)

    def select(self, nodes: torch.Tensor) -> LocalData:
        """The shards of ``nodes`` only (what a single node process holds)."""
        parts = [
            (self.x[o : o + s], self.y[o : o + s])
            for o, s in zip(self.offsets[nodes].tolist(), self.sizes[nodes].tolist(), strict=True)
        ]
        return LocalData.from_shards(parts)


@dataclass(frozen=True)
class TrainingSpec:
    local_steps: int
    batch_size: int
    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    privacy: DPSpec | None = None  # DP-SGD's clipping and noise; None: plain SGD


class FunctionalModel:
    """A model's forward pass and loss as functions of a flat parameter vector.

    The vector holds the model's *shared* state: every ``state_dict`` entry but the
    frozen ones (:func:`~p2pfl.params.frozen_names`, ``model.freeze``), which stay
    constant (:attr:`frozen_state`) and are neither trained nor exchanged.
    :attr:`layout` is the full state's layout, :attr:`shared` the vector's.

    Any module whose forward is a function of its state and its input trains here,
    vectorized over nodes: ``torch.func.functional_call`` under ``vmap`` over the
    stacked per-node state; one backward pass of the summed per-node losses gives
    each node its gradient w.r.t. its trainable parameters.

    Buffers (BatchNorm's running statistics) are part of the shared vector: nodes
    exchange them and the rule aggregates them like parameters (FedAvg averages
    them the same way). They are not differentiated: during local training the
    module runs in train mode, normalizes with the batch's statistics and updates
    each node's running statistics, which :meth:`step` returns and
    :func:`local_steps` writes back, exactly as ``model.train()`` in a per-node
    PyTorch loop does. Evaluation runs the module in eval mode (the running
    statistics). A layer whose parameters are all frozen keeps its statistics
    frozen too, and runs in eval mode during training as well. Random layers
    (dropout) are not supported: ``vmap`` refuses their random draws.
    """

    def __init__(self, model: nn.Module) -> None:
        self.module = model
        self.frozen = frozen_names(model)
        self.layout = ParamLayout.of(model)
        self.shared = ParamLayout.of(model, exclude=self.frozen)
        self.frozen_state = {
            name: t.detach().clone()
            for name, t in model.state_dict().items()
            if name in self.frozen
        }
        self.trainable = self.shared.trainable_mask.to(torch.float32)
        self.all_trainable = bool(self.shared.trainable_mask.all())
        self._slots = [(s.name, s.offset, s.numel, s.shape) for s in self.shared.slots]
        self._params = [
            (s.name, s.offset, s.numel, s.shape) for s in self.shared.slots if s.trainable
        ]
        self._buffers = [
            (s.name, s.offset, s.numel, s.shape) for s in self.shared.slots if not s.trainable
        ]
        self._frozen_layers = [
            m
            for _, m in model.named_modules()
            if list(m.buffers(recurse=False))
            and list(m.parameters(recurse=False))
            and all(not p.requires_grad for p in m.parameters(recurse=False))
        ]
        # Gradients are taken w.r.t. each named tensor, not the flat vector: the
        # backward of slicing a flat vector would build a zero-filled (N, d) tensor
        # per slot; one concatenation at the end is cheaper.
        self._losses = vmap(self._loss_of_state)
        # Per-sample (DP-SGD): over nodes, then over the samples of each node's batch.
        self._sample_grads = vmap(vmap(grad_and_value(self._loss_of_sample), in_dims=(None, 0, 0)))
        self._relu_mlp = ReluMLP.match(model, self.shared) if not self.frozen else None
        self._grouped = GroupedSequential.match(model)
        self._batched_forward = vmap(self.forward, in_dims=(0, None))
        self._per_node_forward = vmap(self.forward, in_dims=(0, 0))

    @contextmanager
    def _mode(self, training: bool) -> Iterator[None]:
        """Train mode for local steps (frozen normalization layers excepted), else eval mode."""
        was = self.module.training
        self.module.train(training)
        for m in self._frozen_layers:
            m.eval()
        try:
            yield
        finally:
            self.module.train(was)

    def initial(self) -> torch.Tensor:
        """The module's current shared state as a flat ``(d,)`` vector."""
        return flatten(self.module, exclude=self.frozen)

    def fingerprint(self) -> str:
        """Names, shapes and dtypes of the whole state, which entries are frozen, and the
        frozen values: equal iff two nodes can exchange vectors and mean the same model.

        Nodes whose frozen weights differ (another pre-trained file) exchange vectors of
        the same length that would be meaningless together; their hellos refuse them.
        """
        h = hashlib.sha256(self.layout.fingerprint().encode())
        for name in sorted(self.frozen):
            t = self.frozen_state[name].contiguous()
            h.update(f"frozen {name}:".encode())
            h.update(t.numpy().tobytes())
        return h.hexdigest()[:16]

    def state(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        shared = {name: flat[o : o + n].view(shape) for name, o, n, shape in self._slots}
        return {**self.frozen_state, **shared} if self.frozen else shared

    def forward(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, self.state(flat), (x,))

    def _loss_of_state(
        self,
        state: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        full = {**self.frozen_state, **buffers, **state}
        logits = functional_call(self.module, full, (x,))
        # As (1, C, B): batched under vmap, the softmax then reduces over a non-inner
        # dimension, several times faster than over a last dimension of ~10 classes.
        loss = F.cross_entropy(logits.T.unsqueeze(0), y.unsqueeze(0))
        return loss, buffers  # and the buffers as the forward pass left them

    def _loss_of_sample(
        self, state: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        full = {**self.frozen_state, **state} if self.frozen else state
        logits = functional_call(self.module, full, (x.unsqueeze(0),))
        return F.cross_entropy(logits, y.unsqueeze(0))

    def grads(
        self, params: torch.Tensor, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-node gradients ``(N, d)`` and losses ``(N,)`` for per-node batches ``(N, B, ...)``
        (zero on buffer coordinates; see :meth:`step` for the updated buffers)."""
        g, loss, _ = self.step(params, x, y)
        return g, loss

    def step(
        self, params: torch.Tensor, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Gradients ``(N, d)``, losses ``(N,)`` and the buffers after the forward pass
        ``(N, d_buffers)`` in slot order (None for a model without shared buffers).

        ReLU MLPs take the closed-form path of :mod:`p2pfl.relu_mlp`; every other
        model ``vmap`` of :func:`torch.func.functional_call`, then one backward pass.
        """
        if self._relu_mlp is not None and self._relu_mlp.accepts(x):
            g, loss = self._relu_mlp.loss_and_grads(params, x, y)
            return g, loss, None
        if self._grouped is not None and self._grouped.accepts(x, per_node=True):
            return self._grouped_step(params, x, y)
        n = params.shape[0]
        state = {
            name: params[:, o : o + k].reshape(n, *shape) for name, o, k, shape in self._params
        }
        buffers = {
            name: params[:, o : o + k].reshape(n, *shape).clone()
            for name, o, k, shape in self._buffers
        }
        # vmap only the forward pass; one backward of the summed per-node losses then
        # gives every node its own gradient (the losses are independent) and runs the
        # batched ops' backward directly, cheaper than vmap(grad(...)).
        with self._mode(True), torch.enable_grad():
            leaves = {k: v.detach().requires_grad_() for k, v in state.items()}
            losses, after = self._losses(leaves, buffers, x, y)
            grads = torch.autograd.grad(losses.sum(), list(leaves.values()))
        by_name = dict(zip(leaves, grads, strict=True))
        loss = losses.detach()
        if not self._buffers:
            flat = [by_name[name].reshape(n, -1) for name, *_ in self._params]
            return torch.cat(flat, dim=1), loss, None
        out = params.new_zeros(params.shape)
        for name, o, k, _ in self._params:
            out[:, o : o + k] = by_name[name].reshape(n, -1)
        new = torch.cat([after[name].reshape(n, -1) for name, *_ in self._buffers], dim=1)
        return out, loss, new

    def _node_state(self, params: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every state entry: ``(N, *shape)`` views of the shared ones, and the frozen ones."""
        n = params.shape[0]
        shared = {name: params[:, o : o + k].reshape(n, *s) for name, o, k, s in self._slots}
        return {**self.frozen_state, **shared}

    def _grouped_step(
        self, params: torch.Tensor, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, None]:
        """:meth:`step` for :class:`~p2pfl.grouped.GroupedSequential` models (no buffers),
        in chunks of nodes."""
        assert self._grouped is not None
        chunk = self._grouped.chunk(tuple(x.shape[2:]), x.shape[1])
        grads, losses = [], []
        with torch.enable_grad():
            for i in range(0, params.shape[0], chunk):
                part = params[i : i + chunk].detach()
                k = part.shape[0]
                leaves = {
                    name: part[:, o : o + m].reshape(k, *shape).requires_grad_()
                    for name, o, m, shape in self._params
                }
                logits = self._grouped.forward({**self.frozen_state, **leaves}, x[i : i + chunk], k)
                loss = F.cross_entropy(logits.transpose(1, 2), y[i : i + chunk], reduction="none")
                loss = loss.mean(1)
                g = torch.autograd.grad(loss.sum(), list(leaves.values()))
                grads.append(torch.cat([t.reshape(k, -1) for t in g], dim=1))
                losses.append(loss.detach())
        return torch.cat(grads), torch.cat(losses), None

    def _grouped_logits(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        assert self._grouped is not None
        per_node = x.dim() == 5
        batch, sample = (x.shape[1], x.shape[2:]) if per_node else (x.shape[0], x.shape[1:])
        chunk = self._grouped.chunk(tuple(sample), batch)
        out = []
        for i in range(0, params.shape[0], chunk):
            part = params[i : i + chunk]
            state = self._node_state(part)
            out.append(
                self._grouped.forward(state, x[i : i + chunk] if per_node else x, part.shape[0])
            )
        return torch.cat(out)

    @property
    def buffer_columns(self) -> torch.Tensor:
        """Indices of the shared vector's buffer coordinates, in slot order."""
        cols = [torch.arange(o, o + k) for _, o, k, _ in self._buffers]
        return torch.cat(cols) if cols else torch.zeros(0, dtype=torch.int64)

    def clipped_grad_sum(
        self,
        params: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        weight: torch.Tensor,
        clip_norm: float,
        max_bytes: int = 256 << 20,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """DP-SGD's clipped sum ``sum_b weight[:, b] * clip(g_b, C)`` ``(N, d)``, and the loss sum ``(N,)``.

        ``g_b`` is the gradient of sample ``b`` alone (trainable coordinates only),
        ``clip(g, C) = g * min(1, C / ||g||)``; ``weight`` ``(N, B)`` is 1 for the
        samples of each node's batch and 0 for padding. ReLU MLPs take the
        closed-form path of :meth:`ReluMLP.clipped_grad_sum` (no per-sample
        gradient is formed); other models ``vmap(vmap(grad(...)))`` over nodes and
        samples, ``(N, B, d)`` in memory, in chunks of nodes of at most ``max_bytes``.
        """
        if self._relu_mlp is not None and self._relu_mlp.accepts(x):
            return self._relu_mlp.clipped_grad_sum(params, x, y, weight, clip_norm)
        # (chunk, B, d) per-sample gradients at a time, at most ~max_bytes of them
        n, batch = y.shape
        chunk = max(1, max_bytes // max(1, 4 * batch * params.shape[1]))
        if n > chunk:
            parts = [
                self.clipped_grad_sum(
                    params[i : i + chunk],
                    x[i : i + chunk],
                    y[i : i + chunk],
                    weight[i : i + chunk],
                    clip_norm,
                    max_bytes,
                )
                for i in range(0, n, chunk)
            ]
            return torch.cat([p for p, _ in parts]), torch.cat([s for _, s in parts])
        if self._buffers:
            raise ValueError(
                "DP-SGD needs per-sample gradients, which a model with running statistics "
                "(BatchNorm) does not have: its forward pass mixes the samples of a batch"
            )
        state = {
            name: params[:, o : o + k].reshape(n, *shape) for name, o, k, shape in self._params
        }
        g, losses = self._sample_grads(state, x, y)
        per_sample = torch.cat([g[name].flatten(2) for name, *_ in self._params], dim=2)
        if not self.all_trainable:
            per_sample.mul_(self.trainable)
        norms = torch.linalg.vector_norm(per_sample, dim=2)  # (N, B)
        scale = (clip_norm / norms).clamp(max=1.0) * weight
        return torch.einsum("nb,nbd->nd", scale, per_sample), (losses * weight).sum(1)

    def logits(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``(N, T, C)`` logits of every node on one shared input batch ``(T, ...)`` (eval mode)."""
        if self._grouped is not None and self._grouped.accepts(x, per_node=False):
            return self._grouped_logits(params, x)
        with self._mode(False):
            return self._batched_forward(params, x)

    def per_node_logits(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``(N, T, C)`` logits of every node on its own input batch ``(N, T, ...)`` (eval mode)."""
        if self._grouped is not None and self._grouped.accepts(x, per_node=True):
            return self._grouped_logits(params, x)
        with self._mode(False):
            return self._per_node_forward(params, x)


def local_steps(
    fmodel: FunctionalModel,
    params: torch.Tensor,
    momentum: torch.Tensor | None,
    data: LocalData,
    nodes: torch.Tensor,
    spec: TrainingSpec,
    seed: int,
    round_: int,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Run ``spec.local_steps`` SGD steps for every node at once.

    ``params`` is ``(N, d)``; ``nodes`` holds the global ids of its rows (they
    select the minibatch streams); ``data`` holds the same nodes' shards, in the
    same order. Returns new parameters, new momentum buffers and the mean loss
    over the steps ``(N,)``. Inputs are not modified.
    """
    x = params.clone()
    buf = momentum.clone() if momentum is not None else None
    mask = None if fmodel.all_trainable else fmodel.trainable.to(x.device)
    total_loss = torch.zeros(x.shape[0], device=x.device)
    grads = (
        _private_grads(fmodel, data, nodes, spec, spec.privacy, seed, round_)
        if spec.privacy is not None
        else _plain_grads(fmodel, data, nodes, spec, seed, round_)
    )
    buffer_cols = fmodel.buffer_columns
    with torch.no_grad():
        for step in range(spec.local_steps):
            g, loss, buffers = grads(x, step)
            if buffers is not None:  # running statistics, as the forward pass updated them
                x[:, buffer_cols] = buffers
            # In place: g is a fresh tensor, and every round allocates less.
            if mask is not None:
                g.mul_(mask)
            if spec.weight_decay:
                decay = x * mask if mask is not None else x
                g.add_(decay, alpha=spec.weight_decay)
            if buf is not None and spec.momentum:
                buf.mul_(spec.momentum).add_(g)
                g = buf
            x.sub_(g, alpha=spec.lr)
            total_loss += loss
    return x, buf, total_loss / spec.local_steps


#: ``(x, step) -> (gradient, loss, buffers after the forward pass or None)``
StepGrads = Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]


def _plain_grads(
    fmodel: FunctionalModel,
    data: LocalData,
    nodes: torch.Tensor,
    spec: TrainingSpec,
    seed: int,
    round_: int,
) -> StepGrads:
    """Step ``s``'s minibatch gradient and loss: uniform batches of :mod:`p2pfl.seeding`."""
    idx = round_batch_indices(seed, nodes, round_, spec.local_steps, spec.batch_size, data.sizes)
    idx += data.offsets.reshape(-1, 1, 1)

    def step_grads(
        x: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        return fmodel.step(x, data.x[idx[:, step]], data.y[idx[:, step]])

    return step_grads


def _private_grads(
    fmodel: FunctionalModel,
    data: LocalData,
    nodes: torch.Tensor,
    spec: TrainingSpec,
    dp: DPSpec,
    seed: int,
    round_: int,
) -> StepGrads:
    """Step ``s``'s DP-SGD gradient ``(sum_e clip(g_e, C) + sigma C xi) / (q n)`` and mean loss."""
    rates = sample_rates(spec.batch_size, data.sizes)
    idx, valid = poisson_batches(seed, nodes, round_, spec.local_steps, rates, data.sizes)
    idx += data.offsets.reshape(-1, 1, 1)
    weight = valid.to(torch.float32)
    counts = weight.sum(-1).clamp(min=1.0)  # (N, steps): mean loss of an empty batch is 0
    expected = (rates * data.sizes).to(torch.float32).reshape(-1, 1)  # q n
    noise = NoiseStreams(seed, nodes, round_)
    std = dp.noise_multiplier * dp.clip_norm

    def step_grads(x: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor, None]:
        at = idx[:, step]
        total, loss = fmodel.clipped_grad_sum(
            x, data.x[at], data.y[at], weight[:, step], dp.clip_norm
        )
        total.add_(noise.next(x.shape[1]), alpha=std)
        return total.div_(expected), loss / counts[:, step], None

    return step_grads


def evaluate(
    fmodel: FunctionalModel,
    params: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    chunk: int = 128,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Accuracy ``(N,)`` and mean cross-entropy ``(N,)`` of every row of ``params`` on ``(x, y)``."""
    accs, losses = [], []
    with torch.no_grad():
        for start in range(0, params.shape[0], chunk):
            logits = fmodel.logits(params[start : start + chunk], x)
            accs.append((logits.argmax(-1) == y).float().mean(-1))
            flat = logits.reshape(-1, logits.shape[-1])
            ce = F.cross_entropy(flat, y.repeat(logits.shape[0]), reduction="none")
            losses.append(ce.reshape(logits.shape[0], -1).mean(-1))
    return torch.cat(accs), torch.cat(losses)


def predictions(
    fmodel: FunctionalModel, params: torch.Tensor, x: torch.Tensor, chunk: int = 128
) -> torch.Tensor:
    """``(N, T)`` predicted classes of every row of ``params`` on ``x``."""
    out = []
    with torch.no_grad():
        for start in range(0, params.shape[0], chunk):
            out.append(fmodel.logits(params[start : start + chunk], x).argmax(-1))
    return torch.cat(out)
