"""The paper's fine-tuning recipe: the presets resolve to the official per-mode values, and the model has the
official dropout placement (none on the ProbSparse attention weights, 0.1 on the embedding) and biased
projections."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from domains.astro.classifier_finetuning import FinetuneConfig
from domains.astro.finetune_recipes import OFFICIAL_RECIPES, apply_recipe
from domains.astro.model import AstroClassifier, AstroModelConfig, build_astrom3_model, model_config_from_dict
from domains.astro.paper_table import TableConfig
from domains.astro.training_budget import resolve_epoch_budget
from shared.cli import parse_config
from shared.trainer import build_optimizer

CONFIGS = Path(__file__).resolve().parents[3] / "domains" / "astro" / "configs"

# Values read from MeriDK/AstroM3 configs/config-<mode>-<subset>.yaml (lr, beta1, weight_decay, dropout, clip).
OFFICIAL = {
    ("photo", "full"): (0.0029252820182446636, 0.9896136892033424, 4.706594018512592e-05, 0.23088861498106117, 5.0),
    ("photo", "sub10"): (0.00012927149363744576, 0.9149369320298176, 0.002405679286704065, 0.09225591774389948, 5.0),
    ("spectra", "sub25"): (0.004633375203573378, 0.7008293738049856, 0.00011387417856645328, 0.3602762571526253, 5.0),
    ("meta", "full"): (0.002744981242271558, 0.9219791256930212, 0.00026179047214550745, 0.19168856047566107, None),
    ("meta", "sub50"): (0.00894210151536042, 0.9503416583351104, 4.3077587972203614e-05, 0.2312530364243061, None),
}
TOWER = {"photo": "photometry", "spectra": "spectra", "meta": "metadata"}


@pytest.mark.parametrize(("mode", "subset"), sorted(OFFICIAL))
def test_paper_preset_resolves_to_the_official_per_mode_recipe(mode: str, subset: str) -> None:
    config = parse_config(
        FinetuneConfig, ["--config", str(CONFIGS / "finetune_paper.yaml"), "--mode", mode, "--subset", subset]
    )
    trainer, model = apply_recipe(config.trainer, config.model, mode, subset, config.recipe)
    lr, beta1, decay, dropout, clip = OFFICIAL[(mode, subset)]
    assert (trainer.lr, trainer.betas, trainer.weight_decay, trainer.grad_clip_norm) == (
        lr,
        (beta1, 0.999),
        decay,
        clip,
    )
    assert getattr(model, TOWER[mode]).dropout == dropout
    assert trainer.optimizer == "adam" and trainer.schedule == "plateau" and trainer.plateau_patience == 3
    assert (trainer.select_metric, trainer.select_mode) == ("val_accuracy", "max")
    assert (trainer.stop_metric, trainer.stop_mode, trainer.early_stopping_patience) == ("val_loss", "min", 6)
    assert (trainer.max_epochs, trainer.warmup_epochs, config.batch_size) == (50, 10, 512)
    # 50 epochs with 10 of warm-up, in steps of the paper's full train split (17,063 objects, batch 512).
    resolved = resolve_epoch_budget(trainer, 17_063, config.batch_size)
    assert (resolved.max_steps, resolved.warmup_steps, resolved.validate_every) == (50 * 33, 10 * 33, 33)
    # Adam with the decay coupled into the gradient, not AdamW.
    optimizer = build_optimizer(torch.nn.Linear(2, 2), resolved)
    assert type(optimizer) is torch.optim.Adam
    assert max(group["weight_decay"] for group in optimizer.param_groups) == decay
    # Every parameter decays (src/main.py hands model.parameters() to Adam), the bias included.
    assert [group["weight_decay"] for group in optimizer.param_groups] == [decay]
    assert sum(len(group["params"]) for group in optimizer.param_groups) == 2
    # LinearLR(start_factor=1e-5): the first warm-up step runs at 1e-5 of the learning rate.
    assert resolved.warmup_start_factor == 1e-5


def test_every_mode_and_budget_has_a_recipe_and_none_leaves_the_trainer_alone() -> None:
    assert {(m, s) for m in ("photo", "spectra", "meta", "all") for s in ("full", "sub50", "sub25", "sub10")} == set(
        OFFICIAL_RECIPES
    )
    config = FinetuneConfig()
    assert apply_recipe(config.trainer, config.model, "photo", "full", "none") == (config.trainer, config.model)


def test_demo_presets_have_the_paper_shape_but_fewer_epochs() -> None:
    demo = FinetuneConfig()
    assert demo.recipe == "official"
    assert 0 < demo.trainer.max_epochs < 50 and demo.trainer.warmup_epochs == demo.trainer.max_epochs / 5
    table = parse_config(TableConfig, ["--config", str(CONFIGS / "table_demo.yaml")])
    assert table.finetune_recipe == "official" and len(table.seeds) == 5
    trainer = table.finetune_trainer
    assert 0 < trainer.max_epochs < 50 and trainer.warmup_epochs == trainer.max_epochs / 5
    paper = parse_config(TableConfig, ["--config", str(CONFIGS / "table_paper.yaml")])
    assert (paper.finetune_trainer.max_epochs, paper.finetune_trainer.warmup_epochs) == (50, 10)


def test_no_dropout_on_the_attention_weights_embedding_dropout_and_biased_projections() -> None:
    config = AstroModelConfig()
    model = build_astrom3_model(config)
    photometry = model.towers["photometry"]
    assert photometry.embedding_dropout.p == 0.1
    assert all(layer.attention.attn_dropout.p == 0.0 for layer in photometry.layers)
    assert all(layer.dropout.p == config.photometry.dropout for layer in photometry.layers)
    for projection in model.projections.values():
        linears = [m for m in projection.modules() if isinstance(m, torch.nn.Linear)]
        assert linears and all(linear.bias is not None for linear in linears)
    fused = AstroClassifier("all", 10, config)
    assert all(
        linear.bias is not None
        for projection in fused.backbone.projections.values()
        for linear in projection.modules()
        if isinstance(linear, torch.nn.Linear)
    )
    # Runs saved before the field existed were built without projection biases, and still load that way.
    assert model_config_from_dict({}).projection_bias is False
