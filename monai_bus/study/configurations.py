"""The six configurations of the paper's Table 1, the training recipes, and the paired comparisons."""

from __future__ import annotations

from dataclasses import dataclass

LOSS_NAMES = {"ce": "CE", "logcosh": "logcosh", "ce_logcosh": "CE-logcosh"}

# recipe -> bundle config files merged in this order (bundle/configs/...)
RECIPES = {
    "default": ("train.json",),
    "paper": ("train.json", "paper_recipe.json"),
}


@dataclass(frozen=True)
class Configuration:
    """One row of Table 1: the network (with or without the attention gate) and the loss.

    Attributes:
        attention: the bundle's ``attention`` id.
        loss: the bundle's ``loss`` id, one of :data:`LOSS_NAMES`.
    """

    attention: bool
    loss: str

    @property
    def id(self) -> str:
        """Name in file names, ``predictions.csv`` and ``--configurations``, e.g. ``attention_vgg16_ce``."""
        return f"{'attention_vgg16' if self.attention else 'vgg16'}_{self.loss}"

    @property
    def network_name(self) -> str:
        return "Attention-VGG16" if self.attention else "VGG16"

    @property
    def loss_name(self) -> str:
        return LOSS_NAMES[self.loss]

    @property
    def title(self) -> str:
        return f"{self.network_name}, {self.loss_name}"


# Table 1's row order
CONFIGURATIONS = tuple(Configuration(attention, loss) for attention in (False, True) for loss in LOSS_NAMES)
BY_ID = {configuration.id: configuration for configuration in CONFIGURATIONS}
# Figure 5's panel order, (a) to (f)
FIGURE5_ORDER = tuple(BY_ID[name] for name in (
    "attention_vgg16_ce_logcosh", "attention_vgg16_ce", "attention_vgg16_logcosh",
    "vgg16_ce_logcosh", "vgg16_ce", "vgg16_logcosh"))


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of two configurations on the same test images and seeds: ``a`` minus ``b``."""

    a: Configuration
    b: Configuration

    @property
    def title(self) -> str:
        if self.a.loss == self.b.loss:
            return f"{self.a.network_name} vs {self.b.network_name} ({self.a.loss_name})"
        return f"{self.a.loss_name} vs {self.b.loss_name} ({self.a.network_name})"


# the paper's two claims: the attention gate helps (for each loss), CE-logcosh beats CE (for each network)
COMPARISONS = (
    tuple(Comparison(BY_ID[f"attention_vgg16_{loss}"], BY_ID[f"vgg16_{loss}"]) for loss in LOSS_NAMES)
    + tuple(Comparison(BY_ID[f"{network}_ce_logcosh"], BY_ID[f"{network}_ce"])
            for network in ("attention_vgg16", "vgg16"))
)
