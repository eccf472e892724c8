"""The recsys commands end to end on a small synthetic RecBole dataset (train → evaluate → recommend → embed)."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from domains.recsys import ablate, augment, embed, evaluate, ingest, noisy_augmentation, recommend, train
from domains.recsys.llmrec.ablation import VARIANTS, AblateConfig
from domains.recsys.llmrec.augmentation import AugmentConfig, DecodingSettings
from domains.recsys.llmrec.datasets import DatasetConfig
from domains.recsys.llmrec.evaluation import EvaluateConfig
from domains.recsys.llmrec.ingestion import IngestConfig
from domains.recsys.llmrec.model import RecommenderConfig
from domains.recsys.llmrec.noisy_augmentation import NoisyAugmentationConfig
from domains.recsys.llmrec.pipeline import TrainConfig, run_training
from domains.recsys.llmrec.recommendations import RecommendConfig
from domains.recsys.llmrec.recommendations import recommend as recommend_for_users
from domains.recsys.llmrec.store_export import EmbedConfig
from domains.recsys.llmrec.training import FitConfig, load_run
from domains.recsys.recbole_io import read_atomic_file
from shared.cli import field_docstrings, parse_config

FAST = ["--fit.batch_size", "64", "--trainer.validate_every_epochs", "1", "--dataset.text_features", "false"]
COMMAND_CONFIGS = [
    (train, TrainConfig),
    (evaluate, EvaluateConfig),
    (recommend, RecommendConfig),
    (embed, EmbedConfig),
    (ingest, IngestConfig),
    (augment, AugmentConfig),
    (ablate, AblateConfig),
    (noisy_augmentation, NoisyAugmentationConfig),
]
OWN_NESTED_CONFIGS = (DatasetConfig, FitConfig, RecommenderConfig, DecodingSettings)


def documented_fields(config_class: type, prefix: str = "") -> list[tuple[str, str]]:
    """``(flag, docstring)`` of every field, recursing into the nested configs this domain owns."""
    docs = field_docstrings(config_class)
    hints = typing.get_type_hints(config_class)
    fields = []
    for field in dataclasses.fields(config_class):
        fields.append((f"{prefix}{field.name}", docs[field.name]))
        if hints[field.name] in OWN_NESTED_CONFIGS:
            fields += documented_fields(hints[field.name], f"{prefix}{field.name}.")
    return fields


@pytest.mark.parametrize(("command", "config_class"), COMMAND_CONFIGS, ids=lambda v: getattr(v, "__name__", ""))
def test_help_documents_every_option(command, config_class, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        command.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    flat = " ".join(text.split())
    for field_name, doc in documented_fields(config_class):
        assert f"--{field_name}" in text, f"{command.__name__} --help lacks --{field_name}"
        assert doc.strip(), f"{config_class.__name__}.{field_name} has no docstring"
        first_words = " ".join(doc.split()[:4]).rstrip(".:,;")
        assert first_words in flat, f"{command.__name__} --help does not show the doc of --{field_name}"


def test_help_check_fails_for_an_undocumented_field() -> None:
    @dataclasses.dataclass
    class Undocumented:
        """A config whose field has no docstring."""

        count: int = 1

    assert documented_fields(Undocumented) == [("count", "")]


def test_train_pipeline_then_evaluate_recommend_embed(synthetic_recbole: Path, tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    args = ["--input", str(synthetic_recbole), "--runs_root", str(runs), "--run_name", "synth"]
    train.main(
        [
            *args,
            *FAST,
            "--trainer.max_epochs",
            "4",
            "--base_epochs",
            "3",
            "--candidates_k",
            "5",
            "--model.prune_drop_fraction",
            "0.71",
        ]
    )
    run_dir = runs / "recsys" / "synth"
    out = capsys.readouterr().out
    assert f"Wrote {run_dir}" in out and "Next: python -m domains.recsys.recommend" in out
    report = json.loads((run_dir / "eval" / "metrics.json").read_text())
    summary = report["augmentation"]
    assert summary["edges"]["answered"] == 36 and summary["attributes"]["answered"] == 45
    assert summary["profiles"]["answered"] == 36, "the offline backend summarises every user's history"
    for key in ("recall@20", "ndcg@20", "precision@50", "ndcg@20_llmrec"):
        assert 0.0 <= report["test"][key] <= 1.0
    assert report["test"]["ndcg@20_llmrec"] >= report["test"]["ndcg@20"]
    assert (run_dir / "model.safetensors").exists() and (run_dir / "base" / "model.safetensors").exists()
    assert (run_dir / "config.yaml").exists() and (run_dir / "metrics.csv").exists()
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert {"train", "val"} <= set(metrics["phase"]) and "recall@20" in set(
        metrics[metrics["phase"] == "val"]["metric"]
    )

    evaluate.main(["--run", str(run_dir), "--ks", "[5, 20]"])
    evaluated = json.loads((run_dir / "eval" / "test_metrics.json").read_text())
    assert evaluated["recall@20"] == pytest.approx(report["test"]["recall@20"]), "the reloaded run scores the same"

    recommend.main(["--run", str(run_dir), "--users", "[1, 2]", "--top_n", "3"])
    table = read_atomic_file(run_dir / "recommendations.tsv")
    assert table["user_id"].tolist() == ["1", "1", "1", "2", "2", "2"]
    assert table["title"].str.startswith("Movie ").all()
    loaded = load_run(run_dir)
    seen = {(u, i) for part in (loaded.data.train, loaded.data.val, loaded.data.test) for u, i in part.tolist()}
    user_index, item_index = loaded.data.user_index(), loaded.data.item_index()
    assert not any((user_index[u], item_index[i]) in seen for u, i in zip(table["user_id"], table["item_id"]))
    with pytest.raises(KeyError, match="unknown user id"):
        recommend_for_users(loaded, ["nobody"])

    store_path = tmp_path / "store.duckdb"
    embed.main(["--run", str(run_dir), "--store", str(store_path)])
    from shared.store import EmbeddingStore

    store = EmbeddingStore(store_path)
    try:
        neighbours = store.nearest(sample_id="synth:item:1", k=3, domain="recsys", modality="item")
        assert len(neighbours) == 3
        counts = store.sql("SELECT modality, count(*) AS n FROM all_embeddings GROUP BY modality ORDER BY modality")
        assert counts["n"].tolist() == [45, 36]
    finally:
        store.close()


def test_ingest_writes_validated_tables(synthetic_recbole: Path, tmp_path: Path) -> None:
    ingest.main(["--input", str(synthetic_recbole), "--runs_root", str(tmp_path), "--run_name", "tables"])
    out = tmp_path / "recsys" / "tables" / "tables"
    interactions = pd.read_parquet(out / "interactions.parquet")
    assert len(interactions) == 36 * 12 and set(interactions["split"]) == {"train", "val", "test"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["items_with_attributes"] == 42


def test_ablation_runs_every_variant_and_writes_a_table(
    synthetic_recbole: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def random_text_features(texts, batch_size=64, max_length=64):
        return np.random.default_rng(0).normal(size=(len(texts), 16)).astype(np.float32)

    monkeypatch.setattr("domains.recsys.llmrec.text_features.encode_texts_minilm", random_text_features)
    ablate.main(
        [
            "--input", str(synthetic_recbole), "--runs_root", str(tmp_path), "--seeds", "[1, 2]",
            "--trainer.max_epochs", "2", "--fit.batch_size", "128", "--trainer.validate_every_epochs", "1",
            "--dataset.cache_dir", str(tmp_path / "cache"),
        ]
    )  # fmt: skip
    results = json.loads((tmp_path / "recsys" / "ablation" / "ablation.json").read_text())
    assert set(results) == set(VARIANTS) and all(len(runs) == 2 for runs in results.values())
    assert results["+mae"] != results["+prune"], "MAE changes training when text features exist"
    table = (tmp_path / "recsys" / "ablation" / "ablation.md").read_text()
    assert table.count("\n") == 2 + len(VARIANTS) and "± " in table


@pytest.mark.parametrize(
    "preset",
    [Path(train.__file__).parent / "configs" / f"{name}.yaml" for name in ("demo", "paper", "gpu")],
    ids=lambda p: p.name,
)
def test_config_presets_parse(preset: Path) -> None:
    config = parse_config(TrainConfig, ["--config", str(preset)])
    assert config.run_name == preset.stem and config.input == "movielens-100k"


def test_training_on_an_llmrec_layout_with_its_shipped_augmentation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pickle

    folder = tmp_path / "netflix"
    folder.mkdir()
    rng = np.random.default_rng(0)
    splits = {part: {} for part in ("train", "val", "test")}
    for user in range(8):
        items = rng.permutation(10)[:6].tolist()
        splits["train"][str(user)], splits["val"][str(user)], splits["test"][str(user)] = (
            items[:4],
            items[4:5],
            items[5:],
        )
    for part, content in splits.items():
        (folder / f"{part}.json").write_text(json.dumps(content))
    np.save(folder / "text_feat.npy", rng.normal(size=(10, 6)).astype(np.float32))
    (folder / "augmented_sample_dict").write_bytes(pickle.dumps({u: {0: 1, 1: 2} for u in range(8)}))
    (folder / "augmented_attribute_dict").write_bytes(pickle.dumps({0: {0: "Ann Lee", 1: "USA", 2: "English"}}))
    (folder / "augmented_user_profiling_dict").write_bytes(pickle.dumps({0: "likes dramas", 3: "likes comedies"}))
    encoded = []

    def fake_minilm(texts, batch_size=64, max_length=64):
        encoded.append(list(texts))
        return np.ones((len(texts), 4), dtype=np.float32)

    monkeypatch.setattr("domains.recsys.llmrec.text_features.encode_texts_minilm", fake_minilm)
    run, _ = run_training(
        parse_config(
            TrainConfig,
            ["--input", str(folder), "--augmentation", "layout", "--runs_root", str(tmp_path / "runs"),
             "--run_name", "layout", "--trainer.max_epochs", "2", "--fit.batch_size", "16"],
        )
    )  # fmt: skip
    run_dir = run.path
    assert encoded and encoded[0][0] == "likes dramas" and encoded[0][1] == ""
    loaded = load_run(run_dir)
    assert loaded.model.profile_projection is not None
    assert loaded.model.user_profile_features[1].abs().sum() == 0, "users without a profile get a zero feature"
    assert loaded.model.attribute_projection is not None and loaded.model.text_projection is not None
