"""The options of a method's default loss, and the memory bank a given loss may hold."""

from __future__ import annotations

from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules.memory_bank import MemoryBankModule
from torch import nn

from selfdamage._checks import check_real
from selfdamage.longtail.temperature import temperature_of

__all__ = [
    "check_schedulable",
    "default_temperature",
    "memory_bank",
    "negative_cosine_similarity",
    "reject_with_loss",
]

_SCHEDULED = (
    "A temperature schedule is taken by SimCLRAdapter, DCLAdapter, DCLWAdapter, MoCoAdapter "
    "and NNCLRAdapter, and by TwoViewAdapter with a loss that has a float `temperature` "
    "(lightly's NTXentLoss, DCLLoss, DCLWLoss); BYOL, SimSiam, Barlow Twins, VICReg, TiCo "
    "and DINO have no InfoNCE temperature."
)


def default_temperature(temperature: object, default: float) -> float:
    """The default loss's temperature: ``temperature`` if given (it must be > 0), else ``default``.

    Examples:
        >>> default_temperature(None, 0.2), default_temperature(0.5, 0.2)
        (0.2, 0.5)
    """
    value = default if temperature is None else temperature
    fix = f"It divides the similarities; the default is {default}."
    return check_real("temperature", value, 0.0, low_open=True, fix=fix)


def negative_cosine_similarity(head: nn.Module) -> NegativeCosineSimilarity:
    """lightly's ``NegativeCosineSimilarity()``, the default loss of BYOL and SimSiam.

    Examples:
        >>> negative_cosine_similarity(nn.Identity())
        NegativeCosineSimilarity()
    """
    return NegativeCosineSimilarity()


def reject_with_loss(loss: nn.Module | None, **options: object) -> None:
    """Raises if options of the default loss are set while a ``loss`` is given."""
    given = [f"{name}={value!r}" for name, value in options.items() if value is not None]
    if loss is not None and given:
        raise ValueError(
            f"{', '.join(given)} configures the default loss, but loss= was given too. "
            f"Set it on your loss instead, or drop loss= to use the default loss."
        )


def memory_bank(loss: nn.Module) -> MemoryBankModule | None:
    """The loss's enabled lightly memory bank, or None if it has none."""
    for module in loss.modules():
        if isinstance(module, MemoryBankModule) and module.size[0] > 0:
            return module
    return None


def check_schedulable(owner: str, loss: nn.Module) -> None:
    """Raises a ``TypeError`` naming ``owner`` unless ``loss`` has a float temperature."""
    try:
        temperature_of(loss)
    except TypeError as error:
        raise TypeError(
            f"temperature= got a temperature schedule, but {owner} has no temperature to "
            f"schedule: its loss, {type(loss).__name__}, has no float `temperature`. " + _SCHEDULED
        ) from error
