"""The study's variants: a base and the long-tail plug-ins trained on it.

A variant's name is a base, then plug-ins, each after a ``+``:

- bases: ``baseline`` (the base method, no damage; the method's own name, e.g. ``simclr``,
  means the same), ``sdclr`` (the base method through the damaged twin), ``balanced`` (the
  base method on a balanced subset of the same size: the reference, without plug-ins);
- plug-ins (:data:`PLUGINS`): ``bcl`` (BCL's momentum-loss boosted augmentation), ``ts``
  (the cosine temperature schedule), ``gh`` (geometric harmonization).

So ``sdclr+bcl`` is BCL-D, ``simclr+bcl`` BCL-I. A name is stored in its canonical form
(:attr:`Variant.name`): ``baseline`` for the base method, plug-ins in the order of
:data:`PLUGINS`, so the default study's runs keep the names they always had.

The study options ``boost="bcl"``, ``temperature_schedule="cosine"`` and ``gh=True`` add
their plug-in to every variant but ``balanced``, with or without ``variants``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from selfdamage.study.models import METHOD_TABLE

__all__ = [
    "BASES",
    "PLUGINS",
    "PLUGIN_METHODS",
    "Variant",
    "check_variants",
    "parse_variant",
    "study_variants",
]

BASES = ("baseline", "sdclr", "balanced")
PLUGINS = ("bcl", "ts", "gh")
PLUGIN_METHODS = ("simclr", "dcl", "dclw")
"""The methods ``bcl`` and ``gh`` apply to: the two-view contrastive ones (lightly's
``NTXentLoss``, ``DCLLoss``, ``DCLWLoss``), whose one loss call takes the dense and the twin's
projections (GH's inputs) and gives the contrastive per-sample loss BCL's authors track."""


@dataclass(frozen=True)
class Variant:
    """A parsed variant: its base and which plug-ins it trains with.

    Examples:
        >>> Variant("sdclr", bcl=True, gh=True).name
        'sdclr+bcl+gh'
    """

    base: str
    bcl: bool = False
    ts: bool = False
    gh: bool = False

    @property
    def name(self) -> str:
        """The canonical name: the base, then the plug-ins in the order of :data:`PLUGINS`."""
        return "+".join([self.base] + [p for p in PLUGINS if getattr(self, p)])


def parse_variant(name: str, method: str) -> Variant:
    """The variant a name stands for, under base method ``method``.

    Raises:
        ValueError: If the name is not a base followed by distinct plug-ins, or is
            ``balanced`` with a plug-in; the message names the value and what is allowed.

    Examples:
        >>> parse_variant("simclr+ts+bcl", "simclr")
        Variant(base='baseline', bcl=True, ts=True, gh=False)
    """
    if not isinstance(name, str):
        raise TypeError(f"variants must be names (str), got {name!r}.")
    base, *plugins = name.split("+")
    bases = {"baseline": "baseline", method: "baseline", "sdclr": "sdclr", "balanced": "balanced"}
    unknown = base not in bases or any(p not in PLUGINS for p in plugins)
    if unknown or len(set(plugins)) != len(plugins):
        raise ValueError(
            f"variants has an unknown name, got {name!r}. Allowed: a base, 'baseline' (or "
            f"the method's name, {method!r}), 'sdclr' or 'balanced', followed by any of the "
            "plug-ins " + ", ".join(f"'+{p}'" for p in PLUGINS) + " once each, e.g. "
            "'sdclr+bcl+ts'."
        )
    if bases[base] == "balanced" and plugins:
        raise ValueError(
            f"variants: 'balanced' is the reference without plug-ins, got {name!r}. List "
            "'balanced' alone."
        )
    return Variant(bases[base], **{p: True for p in plugins})


def study_variants(config: Any) -> tuple[Variant, ...]:
    """The variants a study trains, in order: its ``variants`` or the default design.

    The default is ``baseline``, ``sdclr`` and, with ``balanced_reference``, ``balanced``;
    ``balanced_reference`` also adds ``balanced`` to a ``variants`` list without it. The
    options ``boost``, ``temperature_schedule`` and ``gh`` add their plug-in to every
    variant but ``balanced``.

    Examples:
        >>> from selfdamage.study import StudyConfig
        >>> [v.name for v in study_variants(StudyConfig(boost="bcl"))]
        ['baseline+bcl', 'sdclr+bcl']
    """
    names = list(config.variants or ("baseline", "sdclr"))
    if config.balanced_reference and "balanced" not in names:
        names.append("balanced")
    added = {"bcl": config.boost == "bcl", "ts": config.temperature_schedule == "cosine"}
    added["gh"] = bool(config.gh)
    variants = []
    for name in names:
        variant = parse_variant(name, config.method)
        if variant.base != "balanced":
            flags = {p: getattr(variant, p) or added[p] for p in PLUGINS}
            variant = Variant(variant.base, **flags)
        variants.append(variant)
    return tuple(variants)


def check_variants(config: Any) -> None:
    """Checks ``variants`` and the plug-in options against each other and the method.

    Raises:
        ValueError: If a name is unknown or listed twice, the first variant is
            ``balanced``, or a plug-in does not apply to the method or the epochs.
    """
    if config.variants is not None:
        if isinstance(config.variants, str) or not config.variants:
            raise ValueError(
                f"variants must list at least one variant name, got variants={config.variants!r}."
            )
        object.__setattr__(config, "variants", tuple(config.variants))
    variants = study_variants(config)
    names = [v.name for v in variants]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(
            f"variants must be distinct, got variants={list(config.variants or ())}: "
            f"{twice} would be trained twice (boost, temperature_schedule and gh add their "
            "plug-in to every variant). List each variant once."
        )
    if variants[0].base == "balanced":
        raise ValueError(
            f"variants must start with the variant the others are compared with, got "
            f"variants={list(config.variants or ())}, which starts with 'balanced' (the "
            "reference). Put e.g. 'baseline' or 'sdclr' first."
        )
    for variant in variants:
        _check_plugins(variant, config)


def _check_plugins(variant: Variant, config: Any) -> None:
    method = config.method
    for plugin in ("bcl", "gh"):
        if getattr(variant, plugin) and method not in PLUGIN_METHODS:
            raise ValueError(
                f"variant {variant.name!r}: '{plugin}' needs a two-view contrastive method "
                f"(one loss call on the dense and the twin's projections), got "
                f"method={method!r}; allowed: {', '.join(PLUGIN_METHODS)}."
            )
    if variant.ts and METHOD_TABLE[method].defaults["temperature"] is None:
        takes = [m for m, spec in METHOD_TABLE.items() if spec.defaults["temperature"] is not None]
        raise ValueError(
            f"variant {variant.name!r}: temperature_schedule='cosine' (--temperature-schedule, "
            f"'+ts') needs a method with a loss temperature, got method={method!r}, which "
            f"has none; allowed: {', '.join(takes)}."
        )
    if variant.gh and config.epochs < 2:
        raise ValueError(
            f"variant {variant.name!r}: 'gh' needs epochs >= 2 (a warm-up epoch before its "
            f"loss), got epochs={config.epochs}."
        )
