"""The registries ``AGGREGATORS`` and ``PRE_AGGREGATORS``, and :func:`make_aggregator`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from p2pfl.aggregators import node_rules as r
from p2pfl.aggregators.spec import Aggregator, AggregatorSpec, PreAggregatorSpec, frozen_params
from p2pfl.errors import ConfigError
from p2pfl.registry import Registry, bind_parameters, import_object, is_import_path

AGGREGATORS: Registry[AggregatorSpec] = Registry(
    "aggregator",
    {
        "mean": AggregatorSpec(r.mean_rule, r.any_count, "uniform mean of own and received"),
        "gossip": AggregatorSpec(
            r.gossip_rule, r.any_count, "gossip averaging x_i <- sum_j W_ij x_j"
        ),
        "median": AggregatorSpec(
            r.median_rule, r.honest_majority, "coordinate-wise median (Yin et al. 2018)"
        ),
        "trimmed_mean": AggregatorSpec(
            r.trimmed_mean_rule,
            r.honest_majority,
            "coordinate-wise mean without the f largest and f smallest (Yin et al. 2018)",
        ),
        "krum": AggregatorSpec(
            r.krum_rule, r.krum_count, "input of lowest Krum score (Blanchard et al. 2017)"
        ),
        "multi_krum": AggregatorSpec(
            r.multi_krum_rule,
            r.multi_krum_count,
            "mean of the m inputs of lowest Krum score (Blanchard et al. 2017)",
            r.check_multi_krum,
        ),
        "geometric_median": AggregatorSpec(
            r.geometric_median_rule,
            r.honest_majority,
            "geometric median by smoothed Weiszfeld (RFA, Pillutla et al. 2022)",
            r.check_geometric_median,
        ),
        "centered_clip": AggregatorSpec(
            r.centered_clip_rule,
            r.any_count,
            "centered clipping around the own vector (Karimireddy et al. 2021)",
            r.check_centered_clip,
        ),
        "bulyan": AggregatorSpec(
            r.bulyan_rule, r.bulyan_count, "Bulyan over Krum (El Mhamdi et al. 2018)"
        ),
        "clipped_gossip": AggregatorSpec(
            r.clipped_gossip_rule,
            r.any_count,
            "gossip with clipped pulls; fixed, adaptive or theorem radius (He et al. 2022)",
            r.check_clipped_gossip,
            r.clipped_gossip_oracle,
        ),
    },
    key="aggregator.name",
    importable=True,
)

PRE_AGGREGATORS: Registry[PreAggregatorSpec] = Registry(
    "pre-aggregator",
    {
        "nnm": PreAggregatorSpec(
            r.nnm_step, r.nnm_count, "nearest-neighbour mixing (Allouah et al. 2023)"
        ),
    },
    key="aggregator.pre",
)


def aggregator_spec(name: str) -> AggregatorSpec:
    """The registered rule ``name``, or the one an import path ``package.module:object`` names.

    An imported object may be an :class:`AggregatorSpec` or a plain rule function
    ``rule(hood, *, params) -> (b, d)``; a plain function needs no least number of
    inputs beyond the node's own vector and has no value check (see
    ``docs/extending.md``).
    """
    if not is_import_path(name):
        return AGGREGATORS[name]
    obj = import_object(name, "aggregator.name")
    if isinstance(obj, AggregatorSpec):
        return obj
    doc = (obj.__doc__ or "").strip().splitlines()
    return AggregatorSpec(obj, r.any_count, doc[0] if doc else name)


def make_aggregator(
    name: str,
    params: Mapping[str, Any] | None = None,
    pre: Sequence[str] = (),
    *,
    where: str = "aggregator.params",
) -> Aggregator:
    """The rule ``name`` (registered, or an import path) with ``params`` checked once and fixed.

    ``pre`` names pre-aggregation steps from :data:`PRE_AGGREGATORS`, applied in
    order to own+received before the rule. Unknown names raise
    :class:`~p2pfl.errors.UnknownNameError` naming the key and listing the valid
    names; unknown parameter names, wrong types and out-of-range values raise
    :class:`~p2pfl.errors.ConfigError` naming ``where.<param>``.

    Example:
        >>> agg = make_aggregator("trimmed_mean")
        >>> agg.min_inputs(2)
        5
    """
    spec = aggregator_spec(name)
    if isinstance(pre, str):
        raise ConfigError(f"aggregator.pre: expected a list of names, got {pre!r}")
    steps = tuple((p, PRE_AGGREGATORS[p]) for p in pre)
    bound = bind_parameters(spec.rule, params or {}, where)
    try:
        spec.check(**bound)
    except ValueError as exc:
        raise ConfigError(f"{where}.{exc}") from None
    return Aggregator(name=name, spec=spec, params=frozen_params(bound), pre=steps)
