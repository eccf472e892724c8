"""Presets do what their comments say: BiomedCLIP's towers, BMCA-CLIP's three data regimes through flags."""

from __future__ import annotations

from pathlib import Path

import open_clip
import pytest
from biomed_fixtures import biomedica_sample

from domains.biomed.open_clip_loading import load_open_clip_model
from domains.biomed.training import PretrainConfig, make_train_stream
from shared.cli import parse_config
from shared.shards import ShardWriter

CONFIGS = Path(__file__).resolve().parents[3] / "domains" / "biomed" / "configs"


class _Stop(Exception):
    pass


@pytest.mark.parametrize(("flags", "image_weights"), [([], False), (["--model.pretrained_image_tower", "true"], True)])
def test_biomedclip_preset_trains_the_vit_from_scratch_and_starts_the_text_from_pubmedbert(
    monkeypatch, flags: list[str], image_weights: bool
) -> None:
    config = parse_config(PretrainConfig, ["--config", str(CONFIGS / "biomedclip.yaml"), *flags])
    assert config.model.pretrained_towers is True and config.model.pretrained_image_tower is image_weights
    seen: dict = {}

    def record(name: str, **kwargs):
        seen.update(kwargs)
        raise _Stop

    # online (as the preset is meant to run), but nothing is fetched: the factory call is recorded and stopped
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(open_clip, "create_model_and_transforms", record)
    with pytest.raises(_Stop):
        load_open_clip_model(config.model.source, pretrained_towers=config.model.pretrained_towers,
                             pretrained_image_tower=config.model.pretrained_image_tower)  # fmt: skip
    assert seen["pretrained_image"] is image_weights  # ImageNet weights only when asked for
    assert seen["pretrained_text"] is True  # PubMedBERT's weights


@pytest.fixture(scope="module")
def tiny() -> object:
    return load_open_clip_model("tiny", pretrained_towers=False)


def _concept_shards(folder: Path) -> str:
    with ShardWriter(folder, prefix="bmca", max_samples=12, concept_fields=("image_primary_label",)) as writer:
        for i in range(30):
            writer.write(biomedica_sample(f"plot{i:03d}", image_primary_label=["Plots & Charts"]))
        for i in range(6):
            writer.write(biomedica_sample(f"micro{i:03d}", image_primary_label=["Microscopy"]))
            writer.write(biomedica_sample(f"clin{i:03d}", image_primary_label=["Clinical Imaging"]))
    return str(folder)


@pytest.mark.parametrize("regime", ["full", "concept-balanced", "concept-filtered"])
def test_bmca_preset_selects_each_data_regime_through_flags(tiny, tmp_path: Path, regime: str) -> None:
    urls = _concept_shards(tmp_path / "shards")
    regime_flags = {
        "full": [],
        "concept-balanced": ["--data.concept_balance_threshold", "6"],
        "concept-filtered": ["--data.concepts", '["Microscopy", "Clinical Imaging"]'],
    }[regime]
    # the preset with local shards in place of the gated Hub set, one pass, batches of one
    config = parse_config(PretrainConfig, ["--config", str(CONFIGS / "bmca.yaml"), "--data.hf_repo", "",
                                           "--data.train", urls, "--data.mode", "epoch", "--data.batch_size", "1",
                                           "--data.num_workers", "0", "--data.shuffle_buffer", "0", *regime_flags])  # fmt: skip
    keys = [key for batch in make_train_stream(config, urls, tiny).batches(0, 0) for key in batch["key"]]
    counts = {prefix: sum(key.startswith(prefix) for key in keys) for prefix in ("plot", "micro", "clin")}
    if regime == "full":
        assert counts == {"plot": 30, "micro": 6, "clin": 6}
    elif regime == "concept-filtered":
        assert counts == {"plot": 0, "micro": 6, "clin": 6}
    else:  # the rare concepts are all kept, the frequent one is cut to about 6 of 30
        assert counts["micro"] == counts["clin"] == 6 and 0 < counts["plot"] < 15
