"""Parsing ``--grid`` axes and expanding them into cells."""

from __future__ import annotations

import pytest

from p2pfl.errors import ConfigError
from p2pfl.sweep.grid import (
    Cell,
    display,
    expand,
    parse_axis,
    parse_grid,
    split_values,
    zip_groups,
)

pytestmark = pytest.mark.timeout(30)


def test_axis_values_are_parsed_like_set_values() -> None:
    axis = parse_axis("aggregator.name=mean, median,trimmed_mean")
    assert axis.key == "aggregator.name"
    assert axis.texts == ("mean", "median", "trimmed_mean")
    assert axis.values == ("mean", "median", "trimmed_mean")
    nums = parse_axis("data.partition_params.alpha=0.1,1,10.0")
    assert nums.values == (0.1, 1, 10.0)


def test_commas_inside_brackets_and_quotes_belong_to_the_value() -> None:
    axis = parse_axis('model.params.hidden=[32],[64,64],"a,b"')
    assert axis.values == ([32], [64, 64], "a,b")
    assert split_values("{a = 1, b = 2},x") == ["{a = 1, b = 2}", "x"]


@pytest.mark.parametrize(
    "text",
    [
        "aggregator.name",  # no '='
        "=mean",  # no key
        "aggregator.name=",  # no values
        "aggregator.name=mean,,median",  # empty value
        "name=mean",  # no section
        "aggregator.name=mean,mean",  # duplicate
        "model.params.hidden=[32,[64]",  # unbalanced
        "model.params.hidden=[32]]",  # unbalanced
        'aggregator.name="mean',  # unclosed quote
    ],
)
def test_bad_axis_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="--grid"):
        parse_axis(text)


def test_key_swept_twice_is_rejected() -> None:
    with pytest.raises(ConfigError, match="swept twice"):
        parse_grid(["aggregator.name=mean", "aggregator.name=median"])


def test_expand_is_the_cartesian_product_times_seeds() -> None:
    axes = parse_grid(["aggregator.name=mean,median", "byzantine.attack=alie,ipm,sign_flip"])
    cells = expand(axes, [0, 1])
    assert len(cells) == 2 * 3 * 2
    assert cells[0] == Cell((("aggregator.name", "mean"), ("byzantine.attack", "alie")), 0)
    assert cells[1].seed == 1 and cells[1].values == cells[0].values
    assert cells[-1].values == (("aggregator.name", "median"), ("byzantine.attack", "sign_flip"))
    assert len({c for c in cells}) == len(cells)
    assert cells[0].overrides == [
        "aggregator.name=mean",
        "byzantine.attack=alie",
        "run.seed=0",
    ]


def test_zip_pairs_values_position_by_position() -> None:
    axes = parse_grid(
        ["aggregator.name=mean,median"],
        ["byzantine.attack=alie,ipm", "byzantine.params={z=10},{eps=0.1}"],
    )
    assert zip_groups(axes) == [["byzantine.attack", "byzantine.params"]]
    cells = expand(axes, [0])
    assert [c.values for c in cells] == [
        (("aggregator.name", rule), ("byzantine.attack", attack), ("byzantine.params", params))
        for rule in ("mean", "median")
        for attack, params in (("alie", "{z=10}"), ("ipm", "{eps=0.1}"))
    ]
    only_zip = expand(parse_grid([], ["byzantine.attack=alie,ipm"]), [0, 1])
    assert len(only_zip) == 4


def test_zip_groups_are_crossed_with_each_other() -> None:
    axes = parse_grid(
        [],
        [
            "rule:aggregator.name=clipped_gossip,trimmed_mean",
            "rule:aggregator.params={tau=0.1},{}",
            "byzantine.attack=alie,ipm,mimic",
            "byzantine.params={z=10},{eps=0.1},{}",
        ],
    )
    assert zip_groups(axes) == [
        ["aggregator.name", "aggregator.params"],
        ["byzantine.attack", "byzantine.params"],
    ]
    cells = expand(axes, [0])
    assert len(cells) == 2 * 3
    assert cells[0].values == (
        ("aggregator.name", "clipped_gossip"),
        ("aggregator.params", "{tau=0.1}"),
        ("byzantine.attack", "alie"),
        ("byzantine.params", "{z=10}"),
    )
    with pytest.raises(ConfigError, match="empty group name"):
        parse_grid([], [":aggregator.name=mean"])
    repeated = parse_grid([], ["aggregator.name=cg,cg", "aggregator.params={tau=1},{}"])
    assert len(expand(repeated, [0])) == 2  # a name may repeat, with other parameters
    with pytest.raises(ConfigError, match="combination of values is listed twice"):
        parse_grid([], ["aggregator.name=cg,cg", "aggregator.params={},{}"])
    assert parse_grid([], ["byzantine.attack=pkg.mod:attack"])[0].texts == ("pkg.mod:attack",)


@pytest.mark.parametrize(
    ("grid", "zipped", "message"),
    [
        ([], ["byzantine.attack=alie,ipm", "byzantine.params={z=10}"], "need as many values"),
        (["byzantine.attack=alie"], ["byzantine.attack=ipm"], "swept twice"),
    ],
)
def test_bad_zip_is_a_config_error(grid: list[str], zipped: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_grid(grid, zipped)


def test_no_axes_gives_one_cell_per_seed() -> None:
    cells = expand([], [3, 4])
    assert [c.seed for c in cells] == [3, 4] and all(c.values == () for c in cells)


def test_seed_cannot_be_swept_and_seeds_cannot_be_empty() -> None:
    with pytest.raises(ConfigError, match="--seeds"):
        expand(parse_grid(["run.seed=1,2"]), [0])
    with pytest.raises(ConfigError, match="at least one seed"):
        expand([], [])


def test_display_drops_string_quotes_and_label_names_the_cell() -> None:
    assert display('"krum"') == "krum"
    assert display("[32, 32]") == "[32, 32]"
    cell = Cell((("aggregator.name", "krum"),), 2)
    assert cell.label() == "name=krum seed=2"
