"""Partitioners: how a training set is shared out between nodes.

Every partitioner has the signature
``partition(labels, n_nodes, *, seed=0, ..., allow_overlap=False, copies=0) ->
list[np.ndarray]``: one sorted int64 index array per node, drawn from
``numpy.random.default_rng(seed)``, so the same arguments give the same parts.

Disjoint by default. The parts are disjoint, cover every example, and no node is
empty; when the data cannot give every node its minimum share (``1`` example for
``iid``, ``min_size`` for ``dirichlet``, ``shards_per_node`` one-example shards for
``shards``), a :class:`~p2pfl.errors.DataError` states the numbers.

Overlap, on request. Very large simulations can have more nodes than examples
(2,048 nodes on the 1,437 training digits). With ``allow_overlap = true`` the nodes
are dealt into ``G`` groups, node ``j`` into group ``j mod G``, and each group
receives its own, independent, disjoint partition of the whole training set. Every
example then belongs to exactly ``G`` nodes (one per group), neighbours ``j`` and
``j + 1`` never share an example (unless ``G = 1``), and each node gets about
``G * N / n_nodes`` examples. ``copies`` sets ``G``; ``copies = 0`` takes the least
``G`` that gives every node its minimum share, ``ceil(n_nodes / floor(N / need))``
(``G = 1``, disjoint, when the data suffices). A larger ``copies`` gives each node
more examples, at the price of more duplication.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from p2pfl.errors import ConfigError, DataError

Disjoint = Callable[[np.ndarray, int, np.random.Generator], list[np.ndarray]]


def _check_labels(labels: np.ndarray, n_nodes: int) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise DataError(f"labels must be a 1-D integer array, got {arr.dtype} of shape {arr.shape}")
    if arr.size and int(arr.min()) < 0:
        raise DataError(f"labels must be non-negative, got {int(arr.min())}")
    if isinstance(n_nodes, bool) or not isinstance(n_nodes, int | np.integer) or n_nodes < 1:
        raise ConfigError(f"n_nodes must be a positive integer, got {n_nodes!r}")
    return arr.astype(np.int64, copy=False)


def _groups(
    method: str, n_samples: int, n_nodes: int, need: int, allow_overlap: bool, copies: int
) -> int:
    """How many disjoint copies of the data set are dealt out (see the module docstring)."""
    key = f"data.partition_params ({method})"
    if copies < 0:
        raise ConfigError(f"{key}.copies: must be >= 0, got {copies}")
    if copies > 1 and not allow_overlap:
        raise ConfigError(f"{key}.copies: copies = {copies} needs allow_overlap = true")
    capacity = n_samples // need  # nodes one disjoint partition can serve
    if capacity == 0:
        raise DataError(
            f"{method}: {n_samples} training example(s) cannot give even one node "
            f"the {need} example(s) it needs"
        )
    least = math.ceil(n_nodes / capacity)
    if least > 1 and not allow_overlap:
        raise DataError(
            f"{method}: {n_samples} training examples cannot give {n_nodes} nodes "
            f"{need} example(s) each without overlap (at most {capacity} nodes); "
            "set data.partition_params.allow_overlap = true to give each example to "
            "several nodes, use fewer nodes, or use a larger dataset such as 'synthetic'"
        )
    if copies and copies < least:
        raise DataError(
            f"{method}: copies = {copies} is too few for {n_nodes} nodes on {n_samples} "
            f"examples; at least {least} are needed"
        )
    return max(copies, least, 1)


def _deal(
    labels: np.ndarray,
    n_nodes: int,
    seed: int,
    groups: int,
    disjoint: Disjoint,
) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    parts: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * n_nodes
    for g in range(groups):
        members = range(g, n_nodes, groups)
        for node, idx in zip(members, disjoint(labels, len(members), rng), strict=True):
            parts[node] = np.sort(idx.astype(np.int64, copy=False))
    return parts


# --- iid ---------------------------------------------------------------------------------


def _iid(labels: np.ndarray, m: int, rng: np.random.Generator) -> list[np.ndarray]:
    return list(np.array_split(rng.permutation(labels.size), m))


def iid(
    labels: np.ndarray,
    n_nodes: int,
    *,
    seed: int = 0,
    allow_overlap: bool = False,
    copies: int = 0,
) -> list[np.ndarray]:
    """Uniformly random, equal-size parts: a random permutation cut into ``n_nodes`` pieces.

    Part sizes differ by at most one. See the module docstring for ``allow_overlap``
    and ``copies``.
    """
    arr = _check_labels(labels, n_nodes)
    groups = _groups("iid", arr.size, n_nodes, 1, allow_overlap, copies)
    return _deal(arr, n_nodes, seed, groups, _iid)


# --- dirichlet ---------------------------------------------------------------------------


def _dirichlet_owner(
    labels: np.ndarray, m: int, alpha: float, rng: np.random.Generator
) -> np.ndarray:
    """One draw: for each class, node shares ``p ~ Dir(alpha * 1_m)`` cut its examples."""
    owner = np.empty(labels.size, dtype=np.int64)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        share = rng.dirichlet(np.full(m, alpha))
        bounds = np.minimum(np.floor(np.cumsum(share) * members.size), members.size)
        bounds[-1] = members.size
        ends = bounds.astype(np.int64)
        counts = ends - np.concatenate([np.zeros(1, dtype=np.int64), ends[:-1]])
        owner[members] = np.repeat(np.arange(m), counts)
    return owner


def _repair(owner: np.ndarray, m: int, min_size: int, rng: np.random.Generator) -> None:
    """Move random examples from the largest nodes to those below ``min_size`` (in place)."""
    sizes = np.bincount(owner, minlength=m)
    for node in np.flatnonzero(sizes < min_size):
        while sizes[node] < min_size:
            donor = int(np.argmax(sizes))
            moved = rng.choice(np.flatnonzero(owner == donor))
            owner[moved] = node
            sizes[donor] -= 1
            sizes[node] += 1


def dirichlet(
    labels: np.ndarray,
    n_nodes: int,
    *,
    seed: int = 0,
    alpha: float = 0.5,
    min_size: int = 1,
    max_tries: int = 100,
    repair: bool = False,
    allow_overlap: bool = False,
    copies: int = 0,
) -> list[np.ndarray]:
    """Dirichlet label skew (Hsu, Qi & Brown 2019, "Measuring the effects of non-identical
    data distribution for federated visual classification", in the per-class form used
    by Yurochkin et al. 2019 and Wang et al. 2020).

    For each class ``c`` independently, node shares ``p_c ~ Dir(alpha * 1_N)`` are
    drawn and the class's examples, shuffled, are cut at the boundaries
    ``floor(n_c * cumsum(p_c))``. Small ``alpha`` concentrates each class on a few
    nodes (strongly non-IID); large ``alpha`` approaches an IID split.

    A draw that leaves some node with fewer than ``min_size`` examples is redrawn, up
    to ``max_tries`` times (as in the reference implementations). If every draw fails
    a :class:`~p2pfl.errors.DataError` says so, unless ``repair = true``: the last draw
    is then kept and random examples of the largest nodes are moved to the short ones,
    a small departure from the Dirichlet law that makes very many nodes possible.
    """
    arr = _check_labels(labels, n_nodes)
    key = "data.partition_params (dirichlet)"
    if not (alpha > 0 and math.isfinite(alpha)):
        raise ConfigError(f"{key}.alpha: must be a finite number > 0, got {alpha}")
    if min_size < 1:
        raise ConfigError(f"{key}.min_size: must be >= 1, got {min_size}")
    if max_tries < 1:
        raise ConfigError(f"{key}.max_tries: must be >= 1, got {max_tries}")
    groups = _groups("dirichlet", arr.size, n_nodes, min_size, allow_overlap, copies)

    def draw(lab: np.ndarray, m: int, rng: np.random.Generator) -> list[np.ndarray]:
        short = 0
        for _ in range(max_tries):
            owner = _dirichlet_owner(lab, m, alpha, rng)
            short = int((np.bincount(owner, minlength=m) < min_size).sum())
            if short == 0:
                break
        else:
            if not repair:
                raise DataError(
                    f"dirichlet: after {max_tries} draws with alpha={alpha}, {short} of {m} nodes "
                    f"still had fewer than {min_size} example(s); raise alpha, lower min_size "
                    "or the number of nodes, raise max_tries, or set repair = true"
                )
            _repair(owner, m, min_size, rng)
        order = np.argsort(owner, kind="stable")
        return np.split(order, np.cumsum(np.bincount(owner, minlength=m))[:-1])

    return _deal(arr, n_nodes, seed, groups, draw)


# --- shards ------------------------------------------------------------------------------


def _shard_counts(class_sizes: np.ndarray, total: int) -> np.ndarray:
    """Shards per class: proportional to class size, each class at least one, at most its size."""
    quota = class_sizes * (total / class_sizes.sum())
    counts = np.clip(np.floor(quota).astype(np.int64), 1, class_sizes)
    while counts.sum() < total:
        room = np.where(counts < class_sizes, quota - counts, -np.inf)
        counts[int(np.argmax(room))] += 1
    while counts.sum() > total:
        spare = np.where(counts > 1, quota - counts, np.inf)
        counts[int(np.argmin(spare))] -= 1
    return counts


def shards(
    labels: np.ndarray,
    n_nodes: int,
    *,
    seed: int = 0,
    shards_per_node: int = 2,
    allow_overlap: bool = False,
    copies: int = 0,
) -> list[np.ndarray]:
    """Pathological non-IID shards (McMahan et al. 2017, "Communication-efficient learning
    of deep networks from decentralized data", Sec. 3).

    The examples are sorted by label and cut into ``n_nodes * shards_per_node`` shards;
    the shards are shuffled and each node receives ``shards_per_node`` of them. Here
    each class is cut into its own shards (their number proportional to the class size,
    at least one), so no shard mixes two classes and a node sees at most
    ``shards_per_node`` classes. When there are fewer shards than classes that cannot
    be, and the shards are cut from the label-sorted order as in the paper (a shard may
    then straddle two classes).
    """
    arr = _check_labels(labels, n_nodes)
    k = shards_per_node
    if k < 1:
        raise ConfigError(f"data.partition_params (shards).shards_per_node: must be >= 1, got {k}")
    groups = _groups("shards", arr.size, n_nodes, k, allow_overlap, copies)

    def cut(lab: np.ndarray, m: int, rng: np.random.Generator) -> list[np.ndarray]:
        total = m * k
        # Random order within each class, then a stable sort by label.
        shuffled = rng.permutation(lab.size)
        by_label = shuffled[np.argsort(lab[shuffled], kind="stable")]
        present, sizes = np.unique(lab, return_counts=True)
        if total >= present.size:
            counts = _shard_counts(sizes, total)
            starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            pieces = [
                piece
                for start, size, count in zip(starts, sizes, counts, strict=True)
                for piece in np.array_split(by_label[start : start + size], count)
            ]
        else:
            pieces = list(np.array_split(by_label, total))
        order = rng.permutation(total)
        return [np.concatenate([pieces[s] for s in order[j * k : (j + 1) * k]]) for j in range(m)]

    return _deal(arr, n_nodes, seed, groups, cut)
