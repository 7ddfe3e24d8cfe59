"""Robust aggregation rules, as pure tensor functions and as node-level rules.

Pure functions take ``x`` of shape ``(n, d)`` or batched ``(b, n, d)`` and return
``(d,)`` or ``(b, d)``: :func:`mean`, :func:`median`, :func:`trimmed_mean`,
:func:`krum`, :func:`multi_krum`, :func:`geometric_median`,
:func:`centered_clip`, :func:`bulyan`; :func:`nnm` returns the shape of ``x``;
:func:`clipped_gossip` (with :func:`adaptive_radius` or :func:`theorem_radius`)
works on one node's own vector and its neighbours'.

Node-level rules combine a :class:`Neighbourhood` and are registered in
:data:`AGGREGATORS` (pre-aggregation steps in :data:`PRE_AGGREGATORS`);
:func:`make_aggregator` returns an :class:`Aggregator` with checked parameters.
"""

from p2pfl.aggregators.bulyan import bulyan
from p2pfl.aggregators.catalog import AGGREGATORS, PRE_AGGREGATORS, make_aggregator
from p2pfl.aggregators.centered_clip import centered_clip
from p2pfl.aggregators.clipped_gossip import adaptive_radius, clipped_gossip, theorem_radius
from p2pfl.aggregators.geometric_median import geometric_median
from p2pfl.aggregators.krum import krum, multi_krum
from p2pfl.aggregators.mean import mean
from p2pfl.aggregators.median import median
from p2pfl.aggregators.neighbourhood import Neighbourhood
from p2pfl.aggregators.nnm import nnm
from p2pfl.aggregators.spec import Aggregator, AggregatorSpec, PreAggregatorSpec
from p2pfl.aggregators.trimmed_mean import trimmed_mean

__all__ = [
    "AGGREGATORS",
    "PRE_AGGREGATORS",
    "Aggregator",
    "AggregatorSpec",
    "Neighbourhood",
    "PreAggregatorSpec",
    "adaptive_radius",
    "bulyan",
    "centered_clip",
    "clipped_gossip",
    "geometric_median",
    "krum",
    "make_aggregator",
    "mean",
    "median",
    "multi_krum",
    "nnm",
    "theorem_radius",
    "trimmed_mean",
]
