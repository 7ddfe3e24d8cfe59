"""Scenario configuration: frozen dataclasses, loaded from TOML at the CLI edge.

A scenario file has one table per section below; every key is optional and
defaults to the embedded default scenario (``Scenario()``: digits, 16 nodes on a
random 4-regular graph, 3 sign-flipping Byzantine nodes, coordinate-wise median).
Unknown keys and wrong types raise :class:`~p2pfl.errors.ConfigError` naming the
key (``aggregator.nmae: unknown key; valid keys: f, name, params, pre``).

Registry-backed choices (``data.source``, ``model.name``, ``aggregator.name``,
``byzantine.attack``, ...) carry a ``params`` table checked against the chosen
function's keyword-only parameters when the experiment is built.

Overrides from the command line (``--set aggregator.name=krum``) are applied to
the raw table before it is checked; the value is parsed as a TOML value, falling
back to a plain string (``--set model.params.hidden=[32,32]``).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from p2pfl._compat import tomllib
from p2pfl.errors import ConfigError
from p2pfl.typecheck import coerce

#: Field metadata of keys added after experiments were published: a scenario that leaves
#: them at their defaults keeps its identity (:meth:`Scenario.identity`), so committed
#: sweep tables still name its cells.
LATER = {"later": True}


def _identity(obj: Any) -> dict[str, Any]:
    """The fields of config dataclass ``obj`` as plain data, :data:`LATER` defaults left out."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        if f.name == "base_dir":
            continue
        value = getattr(obj, f.name)
        if f.metadata.get("later"):
            factory = f.default_factory
            default = factory() if factory is not dataclasses.MISSING else f.default
            if value == default:
                continue
        out[f.name] = _identity(value) if dataclasses.is_dataclass(value) else value
    return out


@dataclass(frozen=True)
class RunConfig:
    """What to run: name, seed, number of rounds, evaluation cadence, device.

    ``device`` is ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (:mod:`p2pfl.device`).
    """

    name: str = "default"
    seed: int = 0
    rounds: int = 50
    eval_every: int = 2
    device: str = field(default="cpu", metadata=LATER)

    def __post_init__(self) -> None:
        from p2pfl.device import check_device_name

        check_device_name(self.device)
        _positive("run.rounds", self.rounds)
        _positive("run.eval_every", self.eval_every)
        if self.seed < 0:
            raise ConfigError(f"run.seed: must be >= 0, got {self.seed}")


@dataclass(frozen=True)
class DataConfig:
    """The dataset, its held-out test split and how it is partitioned across nodes.

    ``classes``, when not empty, keeps only the examples of these labels (train and
    test); labels and the number of classes stay as they are, so a model pre-trained
    on other classes of the same source fits (``sims/experiments/transfer``).
    """

    source: str = "digits"
    params: dict[str, Any] = field(default_factory=dict)
    test_fraction: float = 0.2
    partition: str = "iid"
    partition_params: dict[str, Any] = field(default_factory=dict)
    classes: list[int] = field(default_factory=list, metadata=LATER)

    def __post_init__(self) -> None:
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"data.test_fraction: must be in (0, 1), got {self.test_fraction}")
        if len(set(self.classes)) != len(self.classes) or any(c < 0 for c in self.classes):
            raise ConfigError(f"data.classes: must be distinct labels >= 0, got {self.classes}")


@dataclass(frozen=True)
class ModelConfig:
    """The model: a registered name or ``package.module:factory``, its parameters, initial
    weights (``init``, a saved ``state_dict``) and the parameters to keep frozen.

    ``freeze`` holds glob patterns (``fnmatch``) on parameter names (``"0.*"``,
    ``"features.*"``): matched parameters, and the buffers of layers whose
    parameters are all frozen, are neither trained nor exchanged. A pattern that
    matches no parameter is a ConfigError naming it.
    """

    name: str = "mlp"
    params: dict[str, Any] = field(default_factory=lambda: {"hidden": [64]})
    init: str = ""
    freeze: list[str] = field(default_factory=list, metadata=LATER)


@dataclass(frozen=True)
class TrainingConfig:
    """Local SGD run by every node between two communication rounds."""

    local_steps: int = 5
    batch_size: int = 32
    lr: float = 0.5
    momentum: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        _positive("training.local_steps", self.local_steps)
        _positive("training.batch_size", self.batch_size)
        if not self.lr > 0:
            raise ConfigError(f"training.lr: must be > 0, got {self.lr}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"training.momentum: must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ConfigError(f"training.weight_decay: must be >= 0, got {self.weight_decay}")


@dataclass(frozen=True)
class EvaluationConfig:
    """What is measured besides the global test accuracy (:mod:`p2pfl.personalization`).

    ``local_test``: each node also gets a test split drawn with its own training
    label distribution (``local_test_size`` examples) and reports the shared model's
    ``local_accuracy`` on it. ``personalize_steps = K > 0``: after the run, each node
    fine-tunes its final model for ``K`` local SGD steps on its own shard and
    reports ``personalized_accuracy`` on its local test split (needs ``local_test``),
    at learning rate ``personalize_lr`` (``0``: ``training.lr``; fine-tuning a model
    that already fits usually wants a smaller step).
    """

    local_test: bool = False
    local_test_size: int = 100
    personalize_steps: int = 0
    personalize_lr: float = 0.0

    def __post_init__(self) -> None:
        _positive("evaluation.local_test_size", self.local_test_size)
        if self.personalize_steps < 0:
            raise ConfigError(
                f"evaluation.personalize_steps: must be >= 0, got {self.personalize_steps}"
            )
        if not (math.isfinite(self.personalize_lr) and self.personalize_lr >= 0):
            raise ConfigError(
                f"evaluation.personalize_lr: must be >= 0 (0: training.lr), got {self.personalize_lr}"
            )
        if self.personalize_steps and not self.local_test:
            raise ConfigError(
                "evaluation.personalize_steps: personalized models are evaluated on each "
                "node's local test split; set evaluation.local_test = true"
            )


@dataclass(frozen=True)
class TopologyConfig:
    """The communication graph: a builder (``kind``, ``n``, ``params``) or a topology ``file``."""

    kind: str = "random_regular"
    n: int = 16
    params: dict[str, Any] = field(default_factory=lambda: {"degree": 4})
    file: str = ""
    mixing: Literal["metropolis", "uniform", "lazy_metropolis"] = "metropolis"

    def __post_init__(self) -> None:
        _positive("topology.n", self.n)


@dataclass(frozen=True)
class ByzantineConfig:
    """Which nodes are Byzantine, where they sit, and what they send.

    ``nodes`` (explicit ids) wins over ``count`` + ``placement``; a topology file's
    own Byzantine set wins over both. ``knowledge`` is what a vector attack may use:
    ``local``, the vectors its node received this round (what a real process sees),
    or ``omniscient``, every honest vector (simulator only).
    """

    count: int = 3
    nodes: list[int] | None = None
    placement: str = "random"
    placement_params: dict[str, Any] = field(default_factory=dict)
    attack: str = "sign_flip"
    params: dict[str, Any] = field(default_factory=dict)
    knowledge: Literal["local", "omniscient"] = "local"

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ConfigError(f"byzantine.count: must be >= 0, got {self.count}")


@dataclass(frozen=True)
class AggregatorConfig:
    """The robust rule each honest node applies to its own and its neighbours' vectors.

    ``f`` is the number of Byzantine inputs each node's rule tolerates: an integer,
    or ``"auto"`` for each node's actual number of Byzantine neighbours (an oracle
    value, for experiments).
    """

    name: str = "median"
    f: int | Literal["auto"] = 1
    params: dict[str, Any] = field(default_factory=dict)
    pre: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.f, int) and self.f < 0:
            raise ConfigError(f"aggregator.f: must be >= 0 or 'auto', got {self.f}")


@dataclass(frozen=True)
class CompressionConfig:
    """What goes on the wire each round (:mod:`p2pfl.compression`).

    ``name`` is a registered operator (``none``, ``top_k``, ``random_k``, ``qsgd``,
    ``int8``, ``fp16``, ``bf16``) with its ``params``. ``scheme`` ``"direct"`` sends
    the compressed vector (with ``error_feedback``, the residual is added to the next
    one); ``"choco"`` is CHOCO-SGD (Koloskova et al. 2019): public copies, compressed
    differences and consensus step ``gamma`` in (0, 1], or ``"auto"``:
    ``0.7 * sqrt(delta)`` for the operator's contraction ``delta``
    (:meth:`p2pfl.compression.Compressor.auto_gamma`).
    """

    name: str = "none"
    params: dict[str, Any] = field(default_factory=dict)
    scheme: Literal["direct", "choco"] = "direct"
    error_feedback: bool = False
    gamma: float | Literal["auto"] = "auto"

    def __post_init__(self) -> None:
        if self.gamma != "auto" and not (math.isfinite(self.gamma) and 0.0 < self.gamma <= 1.0):
            raise ConfigError(f"compression.gamma: must be in (0, 1], got {self.gamma}")
        if self.error_feedback and self.scheme == "choco":
            raise ConfigError(
                "compression.error_feedback: only for scheme 'direct' (CHOCO's public copies "
                "already carry what a round's compression dropped)"
            )


@dataclass(frozen=True)
class NetworkConfig:
    """Networked runs (``p2pfl node`` / ``p2pfl launch``): liveness, deadlines and limits.

    A live neighbour is waited for, a dead one is not (see :mod:`p2pfl.node.node`):
    ``heartbeat_interval`` (s) paces the heartbeats every node sends each neighbour;
    a neighbour silent for ``dead_after`` (s, a floor: more for irregular senders)
    is dead. A live neighbour that does not deliver a round's vector is waited for
    ``max(round_timeout, patience_factor * recent arrival delays)`` (s), then
    suspected. ``hello_timeout`` (s) bounds the start-up wait for a neighbour never
    heard from (and for a neighbour still in its own start-up).
    """

    host: str = "127.0.0.1"
    round_timeout: float = 10.0
    hello_timeout: float = 30.0
    heartbeat_interval: float = 0.5
    dead_after: float = 5.0
    patience_factor: float = 5.0
    max_message_mb: float = 256.0
    checkpoint_every: int = 0
    insecure: bool = False

    def __post_init__(self) -> None:
        for key in (
            "round_timeout",
            "hello_timeout",
            "heartbeat_interval",
            "dead_after",
            "max_message_mb",
        ):
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"network.{key}: must be a positive number, got {value}")
        if self.dead_after < 2 * self.heartbeat_interval:
            raise ConfigError(
                f"network.dead_after ({self.dead_after:g} s) must be at least twice "
                f"network.heartbeat_interval ({self.heartbeat_interval:g} s): one late "
                "heartbeat must not make a neighbour dead"
            )
        if self.round_timeout < 2 * self.heartbeat_interval:
            raise ConfigError(
                f"network.round_timeout ({self.round_timeout:g} s) must be at least twice "
                f"network.heartbeat_interval ({self.heartbeat_interval:g} s): a neighbour "
                "must be able to say it is still working before it is suspected"
            )
        if not (math.isfinite(self.patience_factor) and self.patience_factor >= 1):
            raise ConfigError(
                f"network.patience_factor: must be a number >= 1, got {self.patience_factor}"
            )
        if self.checkpoint_every < 0:
            raise ConfigError(
                f"network.checkpoint_every: must be >= 0, got {self.checkpoint_every}"
            )


@dataclass(frozen=True)
class PrivacyConfig:
    """Differentially private local training (:mod:`p2pfl.privacy`).

    ``mechanism = "dp_sgd"`` (Abadi et al. 2016): every local step samples each
    example of the node's shard with probability ``batch_size / shard size``
    (Poisson), clips each example's gradient to ``clip_norm`` and adds Gaussian
    noise of standard deviation ``noise_multiplier * clip_norm`` to the sum. Give
    ``noise_multiplier``, or ``target_epsilon`` to have it solved for before the
    run (the smallest noise whose epsilon after ``run.rounds`` rounds is at most
    the target, for the node with the highest sampling rate). ``delta`` defaults
    to ``1 / (largest shard)`` rounded down to a power of ten.
    """

    mechanism: Literal["none", "dp_sgd"] = "none"
    clip_norm: float = 1.0
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    delta: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.clip_norm) and self.clip_norm > 0):
            raise ConfigError(f"privacy.clip_norm: must be a positive number, got {self.clip_norm}")
        sigma, target = self.noise_multiplier, self.target_epsilon
        if sigma is not None and not (math.isfinite(sigma) and sigma > 0):
            raise ConfigError(f"privacy.noise_multiplier: must be a positive number, got {sigma}")
        if target is not None and not (math.isfinite(target) and target > 0):
            raise ConfigError(f"privacy.target_epsilon: must be a positive number, got {target}")
        if self.delta is not None and not 0.0 < self.delta < 1.0:
            raise ConfigError(f"privacy.delta: must be in (0, 1), got {self.delta}")
        if self.mechanism != "dp_sgd":
            return
        if sigma is not None and target is not None:
            raise ConfigError(
                "privacy.target_epsilon: give privacy.noise_multiplier or privacy.target_epsilon, "
                "not both (the noise multiplier is solved from the target)"
            )
        if sigma is None and target is None:
            raise ConfigError(
                "privacy.noise_multiplier: privacy.mechanism = 'dp_sgd' needs "
                "privacy.noise_multiplier or privacy.target_epsilon"
            )


@dataclass(frozen=True)
class Scenario:
    """A complete experiment. ``Scenario()`` is the embedded default."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    topology: TopologyConfig = field(default_factory=TopologyConfig)
    byzantine: ByzantineConfig = field(default_factory=ByzantineConfig)
    aggregator: AggregatorConfig = field(default_factory=AggregatorConfig)
    compression: CompressionConfig = field(default_factory=CompressionConfig, metadata=LATER)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig, metadata=LATER)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig, metadata=LATER)
    # Directory that relative paths in the scenario are resolved against.
    base_dir: str = field(default=".", compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved scenario as plain data (the inverse of :func:`scenario_from_dict`)."""
        out = dataclasses.asdict(self)
        out.pop("base_dir")
        return out

    def identity(self) -> dict[str, Any]:
        """:meth:`to_dict` without the :data:`LATER` keys left at their defaults: what names
        an experiment (sweep cell ids, run ids), unchanged for scenarios that do not use
        them (``run.device`` among them: it says where a run computes, not what)."""
        return _identity(self)

    def resolve_path(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p


T = TypeVar("T")


def _positive(key: str, value: int) -> None:
    if value < 1:
        raise ConfigError(f"{key}: must be >= 1, got {value}")


def _from_mapping(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    """Build dataclass ``cls`` from ``data``, checking every key and type."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name != "base_dir"}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        label = f"{where}.{key}" if where else key
        if key not in fields:
            valid = ", ".join(sorted(fields))
            kind = "section" if not where else "key"
            raise ConfigError(f"{label}: unknown {kind}; valid {kind}s: {valid}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _from_mapping(hint, value, label)  # type: ignore[arg-type]
        else:
            kwargs[key] = coerce(value, hint, label)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - guarded by the key check above
        raise ConfigError(f"{where}: {exc}") from None


def scenario_from_dict(data: Mapping[str, Any], base_dir: str | Path = ".") -> Scenario:
    """Build a :class:`Scenario` from plain data (a parsed TOML document)."""
    scenario = _from_mapping(Scenario, data, "")
    return dataclasses.replace(scenario, base_dir=str(base_dir))


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``section.key=value`` into a key path and a TOML-parsed value."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    path = key.split(".")
    if any(not part for part in path):
        raise ConfigError(f"--set {text!r}: empty name in key path {key!r}")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: take it as a string
    return path, value


#: Registry-backed names and the parameter table of each: ``(section, name key) -> params key``.
NAMED_PARAMS: dict[tuple[str, str], str] = {
    ("data", "source"): "params",
    ("data", "partition"): "partition_params",
    ("model", "name"): "params",
    ("topology", "kind"): "params",
    ("byzantine", "placement"): "placement_params",
    ("byzantine", "attack"): "params",
    ("aggregator", "name"): "params",
    ("compression", "name"): "params",
}


def _current_name(data: Mapping[str, Any], section: str, key: str) -> Any:
    """The name ``section.key`` has in ``data``, or its default when ``data`` does not set it."""
    table = data.get(section)
    if isinstance(table, Mapping) and key in table:
        return table[key]
    return getattr(getattr(Scenario(), section), key)


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``section.key=value`` override applied.

    An override that changes a registry-backed name (``model.name``,
    ``aggregator.name``, ``byzantine.attack``, ... see :data:`NAMED_PARAMS`) starts
    that choice from its own defaults: the parameter table that came with the old
    name is dropped, and parameter overrides (``--set model.params.x=...``, in any
    order) apply on top of the new name's defaults.
    """
    out = _deep_copy(data)
    parsed = [parse_override(text) for text in overrides]
    # Name changes first, so that parameter overrides in any order apply on top.
    for path, value in parsed:
        params_key = NAMED_PARAMS.get((path[0], path[1])) if len(path) == 2 else None
        if params_key is not None and value != _current_name(out, path[0], path[1]):
            section = out.setdefault(path[0], {})
            if isinstance(section, dict):
                section[params_key] = {}
    for text, (path, value) in zip(overrides, parsed, strict=True):
        node = out
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(path[: i + 1])
                raise ConfigError(f"--set {text!r}: {where} is a value, not a table")
            node = child
        node[path[-1]] = value
    return out


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed file is a ConfigError naming it."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such scenario file") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a directory, not a scenario file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a UTF-8 text file") from None


def load_scenario(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Scenario:
    """Load a scenario file (or the embedded default when ``path`` is None) with overrides."""
    if path is None:
        data: dict[str, Any] = {}
        base = Path.cwd()
    else:
        data = read_toml(path)
        base = Path(path).resolve().parent
    return scenario_from_dict(apply_overrides(data, overrides), base_dir=base)
