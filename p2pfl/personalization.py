"""Local test splits and personalization: how well the shared model serves each node's own data.

*Local test split* (``evaluation.local_test``). Node ``i`` gets its own test set,
drawn from the held-out test set with its training shard's label distribution
``p_i(c)`` (its share of each class, as the partitioner dealt it), stratified: of
``T_i`` examples, ``round(T_i p_i(c))`` (largest remainders) of class ``c``, drawn
without replacement. ``T_i = min(S, min_c floor(n_test(c) / p_i(c)))`` with ``S =
evaluation.local_test_size``: the largest split the test set can fill in those
proportions (a node with 53 sevens and 1 nine, when the test set holds 36 sevens,
gets 35 sevens and 1 nine, not 36 of each). The training shards are untouched, so
the global numbers of a run do not change when local tests are switched on.
``local_accuracy`` is the shared model's accuracy on it.

*Personalization* (``evaluation.personalize_steps = K``; Wang et al. 2019,
"Federated evaluation of on-device personalization"; Yu, Bagdasaryan, Shmatikov
2020, "Salvaging federated learning by local adaptation"): after the last round,
each node runs ``K`` steps of its local SGD (:func:`p2pfl.learning.local_steps`,
same batch size, learning rate ``evaluation.personalize_lr`` (default
``training.lr``), fresh momentum, the minibatch stream of round ``rounds + 1``) from its final model, on its own shard, and is evaluated on its
local test split: ``personalized_accuracy``. The personalized model is only
measured; it is neither sent nor kept.

The simulator and the node both call :func:`local_score` and :func:`personalize`
on their rows, so the numbers agree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from p2pfl.learning import FunctionalModel, LocalData, TrainingSpec, local_steps
from p2pfl.rounds import divergence


@dataclass(frozen=True)
class LocalTests:
    """Every node's local test split, padded to one length: node ``k`` owns ``x[k][mask[k]]``."""

    x: torch.Tensor  # (N, T, *input_shape)
    y: torch.Tensor  # (N, T) int64
    mask: torch.Tensor  # (N, T) bool

    def select(self, nodes: torch.Tensor) -> LocalTests:
        return LocalTests(self.x[nodes], self.y[nodes], self.mask[nodes])

    def to(self, device: torch.device) -> LocalTests:
        return LocalTests(self.x.to(device), self.y.to(device), self.mask.to(device))

    @property
    def sizes(self) -> torch.Tensor:
        return self.mask.sum(1)


def draw_local_tests(
    train_labels: list[np.ndarray],
    num_classes: int,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    size: int,
    seed: int,
) -> LocalTests:
    """Each node's local test split (see the module docstring); ``train_labels[i]`` are node
    ``i``'s training labels. Drawn from ``numpy.random.default_rng(seed)``, node by node."""
    rng = np.random.default_rng(seed)
    labels = test_y.numpy()
    by_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
    available = np.array([len(ix) for ix in by_class], dtype=np.float64)
    picks = []
    for own in train_labels:
        counts = class_counts(np.asarray(own, dtype=np.int64), num_classes, available, size)
        chosen = [
            rng.choice(by_class[c], size=int(k), replace=False) for c, k in enumerate(counts) if k
        ]
        picks.append(np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64))
    t = max(1, max(len(p) for p in picks))
    index = torch.zeros((len(picks), t), dtype=torch.int64)
    mask = torch.zeros((len(picks), t), dtype=torch.bool)
    for k, p in enumerate(picks):
        index[k, : len(p)] = torch.as_tensor(p, dtype=torch.int64)
        mask[k, : len(p)] = True
    return LocalTests(test_x[index], test_y[index], mask)


def class_counts(own: np.ndarray, num_classes: int, available: np.ndarray, size: int) -> np.ndarray:
    """Examples of each class in a node's local test split (see the module docstring).

    Classes the test set does not hold are left out of the node's distribution.
    """
    share = np.bincount(own, minlength=num_classes).astype(np.float64) * (available > 0)
    present = share > 0
    if not present.any():
        return np.zeros(num_classes, dtype=np.int64)
    share /= share.sum()
    fill = np.min(available[present] / share[present])
    total = min(size, int(np.floor(fill + 1e-9)))
    exact = total * share
    counts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    for c in order[: total - int(counts.sum())]:
        counts[c] += 1
    return np.minimum(counts, available.astype(np.int64))


def local_score(
    fmodel: FunctionalModel, params: torch.Tensor, tests: LocalTests, num_classes: int
) -> torch.Tensor:
    """``(N,)`` accuracy of each row of ``params`` on its own node's local test split.

    A diverged row (:func:`p2pfl.rounds.divergence`) scores chance, as in
    :func:`p2pfl.rounds.score`; a node without local test examples scores NaN.
    """
    with torch.no_grad():
        logits = fmodel.per_node_logits(params, tests.x)  # (N, T, C)
        right = (logits.argmax(-1) == tests.y) & tests.mask
        acc = right.sum(1).to(torch.float32) / tests.sizes.to(torch.float32)
    broken, _ = divergence(params)
    if bool(broken.any()):
        acc[broken] = 1.0 / num_classes
    return acc


def personalize(
    fmodel: FunctionalModel,
    params: torch.Tensor,
    data: LocalData,
    nodes: torch.Tensor,
    spec: TrainingSpec,
    steps: int,
    seed: int,
    rounds: int,
    lr: float = 0.0,
) -> torch.Tensor:
    """``(N, d)``: ``steps`` local SGD steps from ``params`` on the nodes' own shards (round
    ``rounds + 1``'s minibatches, fresh momentum, learning rate ``lr``, or ``spec.lr``
    when ``lr`` is 0); ``params`` is not modified."""
    momentum = torch.zeros_like(params) if spec.momentum else None
    tuned, _, _ = local_steps(
        fmodel,
        params,
        momentum,
        data,
        nodes,
        dataclasses.replace(spec, local_steps=steps, lr=lr or spec.lr),
        seed,
        rounds + 1,
    )
    return tuned
