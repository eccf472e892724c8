"""AstroM3's fine-tuning recipe per mode and label budget (the official Optuna-tuned settings).

Values copied from MeriDK/AstroM3 ``configs/config-{photo,spectra,meta}-{full,sub50,sub25,sub10}.yaml``
(keys ``lr``, ``beta1``, ``weight_decay``, ``p_dropout``/``s_dropout``/``m_dropout``, ``clip_grad``/
``clip_value``, ``scheduler_factor``); every one of them also sets ``epochs: 50``, ``warmup_epochs: 10``,
``early_stopping_patience: 6``, ``scheduler: ReduceLROnPlateau`` with ``scheduler_patience: 3``, ``beta2:
0.999``. ``src/main.py`` builds ``torch.optim.Adam(..., weight_decay=...)`` (L2 decay coupled into the
gradient); ``src/trainer.py`` keeps the weights with the best validation accuracy and stops early on the
validation loss. The repository ships no fine-tuning config for mode ``all``: its learning rate is the
paper's all-full-clip value (9.50e-3, no gradient clipping); its betas and weight decay are the CLIP
pretraining's (``configs/config-clip-full.yaml``), and its towers keep the dropout they were built with.

:func:`apply_recipe` puts a recipe into a trainer config and a model config; the shape of the schedule
(epochs, warm-up, patience) stays the trainer config's, so the paper preset (50 epochs, 10 of warm-up) and
the demo preset (fewer) share the recipe.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from domains.astro.model import AstroModelConfig
from shared.trainer import TrainerConfig

RECIPES = ("official", "none")
"""``official``: per-mode and per-budget settings below; ``none``: the trainer config as given."""


@dataclass(frozen=True)
class FinetuneRecipe:
    """One (mode, label budget)'s optimizer settings and tower dropout.

    Attributes:
        lr: Peak learning rate.
        beta1: Adam beta1 (beta2 is 0.999 everywhere).
        weight_decay: L2 decay, coupled into the gradient (``torch.optim.Adam``).
        dropout: Dropout of the mode's tower (``None``: keep the model config's).
        grad_clip_norm: Gradient-norm clip (``None``: no clipping).
        plateau_decay: ReduceLROnPlateau factor.
    """

    lr: float
    beta1: float
    weight_decay: float
    dropout: float | None
    grad_clip_norm: float | None
    plateau_decay: float


OFFICIAL_RECIPES: dict[tuple[str, str], FinetuneRecipe] = {
    ("photo", "full"): FinetuneRecipe(2.9252820182446636e-3, 0.9896136892033424, 4.706594018512592e-5, 0.23088861498106117, 5.0, 0.5055209371179913),
    ("photo", "sub50"): FinetuneRecipe(4.085711843480401e-3, 0.9650996147067188, 1.890204163209976e-5, 0.09866925844981277, 5.0, 0.3864002447070358),
    ("photo", "sub25"): FinetuneRecipe(8.657926375343512e-4, 0.9595044001144828, 7.018263282014307e-4, 0.1311369373756044, 5.0, 0.9452305159548636),
    ("photo", "sub10"): FinetuneRecipe(1.2927149363744576e-4, 0.9149369320298176, 2.405679286704065e-3, 0.09225591774389948, 5.0, 0.9319938220468964),
    ("spectra", "full"): FinetuneRecipe(3.970178217704787e-3, 0.7623427777917324, 1.5797808521611945e-4, 0.3161089643126984, 5.0, 0.6019231988810758),
    ("spectra", "sub50"): FinetuneRecipe(9.108121363693778e-3, 0.9017578625564971, 4.0105661758006e-4, 0.2150546816155032, 5.0, 0.8188233456609151),
    ("spectra", "sub25"): FinetuneRecipe(4.633375203573378e-3, 0.7008293738049856, 1.1387417856645328e-4, 0.3602762571526253, 5.0, 0.8489857433390333),
    ("spectra", "sub10"): FinetuneRecipe(5.733557394025984e-3, 0.9706049382983424, 8.311501808684634e-3, 0.219251883044236, 5.0, 0.914364478102646),
    ("meta", "full"): FinetuneRecipe(2.744981242271558e-3, 0.9219791256930212, 2.6179047214550745e-4, 0.19168856047566107, None, 0.3720521973024151),
    ("meta", "sub50"): FinetuneRecipe(8.94210151536042e-3, 0.9503416583351104, 4.3077587972203614e-5, 0.2312530364243061, None, 0.39704562249416153),
    ("meta", "sub25"): FinetuneRecipe(8.218587195918435e-3, 0.9036506970927458, 2.237573205487715e-4, 0.13521790585984286, None, 0.3080174269485989),
    ("meta", "sub10"): FinetuneRecipe(9.586101387197628e-3, 0.960355167407052, 1.6692845865161668e-3, 0.1479383968245285, None, 0.48040637245293494),
    # No 'all' config in the repository: lr of the paper's all-full-clip run, betas/decay of the CLIP recipe.
    **{("all", subset): FinetuneRecipe(9.50e-3, 0.92619, 4.6701e-3, None, None, 0.1125) for subset in ("full", "sub50", "sub25", "sub10")},
}  # fmt: skip
"""(mode, label budget) → recipe, from the official configs (see the module docstring)."""

_MODE_TOWER = {"photo": "photometry", "spectra": "spectra", "meta": "metadata"}


def official_recipe(mode: str, subset: str) -> FinetuneRecipe:
    """The official recipe of ``mode`` on label budget ``subset``."""
    try:
        return OFFICIAL_RECIPES[(mode, subset)]
    except KeyError:
        raise ValueError(f"no official fine-tuning recipe for mode {mode!r} on subset {subset!r}") from None


def apply_recipe(
    trainer: TrainerConfig, model: AstroModelConfig, mode: str, subset: str, recipe: str = "official"
) -> tuple[TrainerConfig, AstroModelConfig]:
    """``trainer`` and ``model`` with the recipe of (``mode``, ``subset``) filled in.

    With ``recipe="official"`` the optimizer becomes Adam with coupled decay on every parameter at the
    recipe's learning rate, beta1, decay and clip, warmed up linearly from 1e-5 of the learning rate; the plateau schedule (patience 3) takes its factor; the kept weights are those with
    the best validation accuracy and early stopping (patience 6) follows the validation loss; the mode's
    tower gets the recipe's dropout. Budget and warm-up (``max_epochs``, ``warmup_epochs``) stay the
    trainer's. ``recipe="none"`` returns both unchanged.
    """
    if recipe == "none":
        return trainer, model
    if recipe != "official":
        raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}")
    settings = official_recipe(mode, subset)
    trainer = dataclasses.replace(
        trainer,
        optimizer="adam",
        lr=settings.lr,
        betas=(settings.beta1, 0.999),
        weight_decay=settings.weight_decay,
        # src/main.py hands model.parameters() to Adam (every parameter decays) and src/utils.py warms up
        # with LinearLR(start_factor=1e-5).
        decay_all_parameters=True,
        warmup_start_factor=1e-5,
        grad_clip_norm=settings.grad_clip_norm,
        schedule="plateau",
        plateau_patience=3,
        plateau_decay=settings.plateau_decay,
        select_metric="val_accuracy",
        select_mode="max",
        stop_metric="val_loss",
        stop_mode="min",
        early_stopping_patience=6,
    )
    if settings.dropout is not None:
        tower = _MODE_TOWER[mode]
        model = dataclasses.replace(
            model, **{tower: dataclasses.replace(getattr(model, tower), dropout=settings.dropout)}
        )
    return trainer, model
