"""Local test splits and personalization: how well the shared model serves each node's own data.

*Local test split* (``evaluation.local_test``). Node ``i`` gets its own test set,
drawn from the held-out test set with its training shard's label distribution
``p_i(c)`` (its share of each class, as the partitioner dealt it): each test
example of class ``c`` is drawn with probability proportional to
``p_i(c) / n_test(c)``, without replacement, ``evaluation.local_test_size``
examples (fewer when the node's classes have fewer test examples). The training
shards are untouched, so the global numbers of a run do not change when local
tests are switched on. ``local_accuracy`` is the shared model's accuracy on it.

*Personalization* (``evaluation.personalize_steps = K``; Wang et al. 2019,
"Federated evaluation of on-device personalization"; Yu, Bagdasaryan, Shmatikov
2020, "Salvaging federated learning by local adaptation"): after the last round,
each node runs ``K`` steps of its local SGD (:func:`p2pfl.learning.local_steps`,
same learning rate and batch size, fresh momentum, the minibatch stream of round
``rounds + 1``) from its final model, on its own shard, and is evaluated on its
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
    per_class = np.bincount(labels, minlength=num_classes).astype(np.float64)
    picks = []
    for own in train_labels:
        share = np.bincount(np.asarray(own, dtype=np.int64), minlength=num_classes)
        share = share / max(1, share.sum())
        weight = np.where(
            per_class[labels] > 0, share[labels] / np.maximum(per_class[labels], 1), 0
        )
        eligible = int((weight > 0).sum())
        take = min(size, eligible)
        idx = rng.choice(labels.size, size=take, replace=False, p=weight / weight.sum())
        picks.append(np.sort(idx))
    t = max(1, max(len(p) for p in picks))
    index = torch.zeros((len(picks), t), dtype=torch.int64)
    mask = torch.zeros((len(picks), t), dtype=torch.bool)
    for k, p in enumerate(picks):
        index[k, : len(p)] = torch.as_tensor(p, dtype=torch.int64)
        mask[k, : len(p)] = True
    return LocalTests(test_x[index], test_y[index], mask)


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
) -> torch.Tensor:
    """``(N, d)``: ``steps`` local SGD steps from ``params`` on the nodes' own shards (round
    ``rounds + 1``'s minibatches, fresh momentum); ``params`` is not modified."""
    momentum = torch.zeros_like(params) if spec.momentum else None
    tuned, _, _ = local_steps(
        fmodel,
        params,
        momentum,
        data,
        nodes,
        dataclasses.replace(spec, local_steps=steps),
        seed,
        rounds + 1,
    )
    return tuned
