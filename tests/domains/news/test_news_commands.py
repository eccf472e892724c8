"""End to end on a tiny out-of-context set: ingest → train → evaluate → detect → embed → ablate.

The posts are coloured shapes with their true caption (real) or another shape's picture (fake), in the
plain JSONL layout, written by the session fixture ``trained`` (conftest.py) that ingests and trains once.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from domains.news import ablate, detect, embed, evaluate, ingest, train
from shared.cli import build_parser, field_docstrings, run_command
from shared.run_folder import RunFolder, finished_runs, read_metrics, sha256_of


def test_train_writes_run_folder_and_selects_on_validation(trained: dict) -> None:
    run = trained["run"]
    for name in ("config.yaml", "metrics.csv", "detector.json", "clip_alignment.safetensors", "eval/metrics.json"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "best.safetensors").is_file()
    assert (run / "eval" / "confusion_matrix.png").stat().st_size > 0 and (run / "eval" / "roc.png").is_file()
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["split_sizes"] == {"train": 16, "val": 4, "test": 4}
    assert metrics["num_posts"] == 4 and set(metrics["per_class"]) == {"real", "fake"}
    assert metrics["selected_on"].startswith("val roc_auc")
    assert "val" in (run / "metrics.csv").read_text()
    confusion = np.array(metrics["confusion_matrix"])
    assert confusion.sum() == 4 and metrics["accuracy"] == pytest.approx(np.trace(confusion) / 4)


def test_detect_agrees_with_evaluation_and_explains(trained: dict, tmp_path: Path) -> None:
    run = trained["run"]
    root = trained["root"]
    single = detect.main(
        [
            "--run",
            str(run),
            "--text",
            "a red square",
            "--image",
            str(root / "img" / "red-square.png"),
            "--device",
            "cpu",
        ]
    )[0]
    assert single["label"] in ("real", "fake") and 0.0 <= single["prob_fake"] <= 1.0
    assert set(single["attention"]) == {"text", "image", "cross"}
    assert all(0.0 < w < 1.0 for w in single["attention"].values())
    assert -1.0 <= single["clip_similarity"] <= 1.0

    post_file = tmp_path / "post.json"
    post_file.write_text(json.dumps({"text": "a red square", "image": str(root / "img" / "red-square.png")}))
    from_json = detect.main(["--run", str(run), "--post", str(post_file), "--device", "cpu"])[0]
    assert from_json["prob_fake"] == pytest.approx(single["prob_fake"], abs=1e-5)

    output = tmp_path / "posts.results.jsonl"
    results = detect.main(["--run", str(run), "--input", str(trained["posts"]), "--out_dir", str(tmp_path)])
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(lines) == len(results) == 25
    assert lines[-1] == {"id": "broken", "skipped": "no readable image"}
    by_id = {r["id"]: r for r in lines}
    # FND-CLIP's layer weighting depends on the batch (as published): the same post in a batch of one
    one_by_one = tmp_path / "one"
    detect.main(
        ["--run", str(run), "--input", str(trained["posts"]), "--out_dir", str(one_by_one), "--batch_size", "1"]
    )
    alone = {r["id"]: r for r in map(json.loads, (one_by_one / "posts.results.jsonl").read_text().splitlines())}
    assert alone["0-r"]["prob_fake"] == pytest.approx(single["prob_fake"], abs=1e-5)  # same post, batch path
    assert by_id["0-r"]["true_label"] == "real"

    # the evaluation path (cached features) gives the same probabilities as detect (features from raw posts)
    from domains.news.feature_cache import load_post_table
    from domains.news.trained_detector import load_detector

    detector = load_detector(run)
    table = load_post_table(trained["shards"], detector.encoders, trained["root"] / "cache")
    predicted = detector.predict_from_features(detector.encoders.finish(table.base))
    for key, prob in zip(table.keys, predicted["prob_fake"]):
        post_id = key.removeprefix("jsonl-")
        assert by_id[post_id]["prob_fake"] == pytest.approx(float(prob), abs=1e-4)


def test_evaluate_and_embed(trained: dict) -> None:
    run = trained["run"]
    val = evaluate.main(["--run", str(run), "--split", "val", "--cache_dir", str(trained["root"] / "cache")])
    assert val["num_posts"] == 4 and (run / "eval" / "val" / "metrics.json").is_file()
    marker = RunFolder(run).marker()  # still the training run's marker, now listing the new evaluation too
    assert marker["command"] == "domains.news.train"
    assert marker["outputs"]["eval/val/metrics.json"]["sha256"] == sha256_of(run / "eval" / "val" / "metrics.json")
    test_metrics = evaluate.main(["--run", str(run), "--cache_dir", str(trained["root"] / "cache")])
    stored = json.loads((run / "eval" / "metrics.json").read_text())
    assert test_metrics["accuracy"] == stored["accuracy"] and test_metrics["roc_auc"] == stored["roc_auc"]

    store_path = trained["root"] / "store.duckdb"
    written = embed.main(["--run", str(run), "--store", str(store_path), "--cache_dir", str(trained["root"] / "cache")])
    assert written["written"] == {"post": 24, "text": 24, "image": 24}
    from shared.store import EmbeddingStore

    store = EmbeddingStore(store_path)
    try:
        samples = store.sql("SELECT sample_id, label, prob_fake FROM samples_news ORDER BY sample_id")
        assert len(samples) == 24 and set(samples["label"]) == {"real", "fake"}
        hits = store.nearest(sample_id=samples["sample_id"][0], k=3, domain="news", modality="post")
        assert len(hits) == 3
    finally:
        store.close()
    again = embed.main(["--run", str(run), "--store", str(store_path), "--cache_dir", str(trained["root"] / "cache")])
    assert again["written"] == written["written"]  # idempotent: re-running replaces, never duplicates
    store = EmbeddingStore(store_path)
    try:
        assert int(store.sql("SELECT count(*) AS n FROM samples_news")["n"][0]) == 24
    finally:
        store.close()


def test_ablate_writes_a_table_per_variant_and_seed(trained: dict, fast: list[str]) -> None:
    result = ablate.main(
        [
            "--input",
            str(trained["shards"]),
            "--runs_root",
            str(trained["runs"]),
            "--run_name",
            "abl",
            "--cache_dir",
            str(trained["root"] / "cache"),
            "--variants",
            '["full", "text_only", "image_only"]',
            "--seeds",
            "[1, 2]",
            *fast,
        ]
    )
    # every caption of the tiny set is once real and once fake: a text-only model is 0.5 by design
    assert set(result["runs"]) == {"full", "image_only"} and set(result["runs"]["full"]) == {"1", "2"}
    assert set(result["constant_by_design"]) == {"text_only"}
    accuracies = [result["runs"]["full"][s]["accuracy"] for s in ("1", "2")]
    assert result["summary"]["full"]["accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
    table = (trained["runs"] / "news" / "abl" / "ablation.md").read_text()
    assert "| full |" in table and "| image_only |" in table and "| text_only |" not in table
    assert "Not tabulated: `text_only` is constant by design" in table and "CLIP similarity gauge" in table
    assert result["runs"]["image_only"]["1"]["mean_attention"].keys() == {"image"}
    # the paired difference full − image_only, from the per-seed values
    differences = [
        result["runs"]["full"][s]["accuracy"] - result["runs"]["image_only"][s]["accuracy"] for s in ("1", "2")
    ]
    paired = result["paired_differences"]["image_only"]["accuracy"]
    assert paired["mean"] == pytest.approx(np.mean(differences)) and paired["verdict"] in (
        "supported",
        "contradicted",
        "cannot tell",
    )
    assert "| full − image_only | accuracy |" in table
    gauge = result["similarity_gauge_roc_auc"]
    assert gauge["all"] is None or 0.0 <= gauge["all"] <= 1.0
    with pytest.raises(ValueError, match="unknown variant"):
        ablate.main(["--variants", '["everything"]', "--runs_root", str(trained["runs"])])
    # every run of the study trained for the budget given on the command line, with its own seed
    for variant in ("full", "image_only"):
        for seed in (1, 2):
            sub_run = trained["runs"] / "news" / "abl" / variant / f"seed-{seed}"
            saved = yaml.safe_load((sub_run / "config.yaml").read_text())
            assert saved["trainer"]["max_steps"] == 30 and saved["trainer"]["seed"] == seed
            assert last_train_step(sub_run) == 30
    summary = result["summary"]["full"]["accuracy"]
    assert summary["std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert RunFolder(trained["runs"] / "news" / "abl").marker()["command"] == "domains.news.ablate"


@pytest.mark.parametrize("preset", ["demo", "paper", "gpu"])
def test_config_presets_parse(preset: str) -> None:
    from shared.cli import parse_config

    path = Path(train.__file__).parent / "configs" / f"{preset}.yaml"
    config = parse_config(train.TrainConfig, ["--config", str(path)])
    assert config.trainer.lr == pytest.approx(1e-3) and config.trainer.weight_decay == 0.0
    assert config.trainer.select_metric in ("roc_auc", "accuracy")
    if preset == "demo":  # the preset documents the defaults of `train` with no arguments
        assert config == parse_config(train.TrainConfig, [])
    if preset == "paper":
        assert config.encoders.image_tower_args["depth"] == 101 and config.encoders.text_max_length == 300


def test_fine_tuning_the_image_tower_as_the_paper(trained: dict, fast: list[str]) -> None:
    import torch

    from domains.news.trained_detector import load_detector
    from shared.towers import create_tower

    args = ["--input", str(trained["shards"]), "--runs_root", str(trained["runs"]), "--run_name", "tuned"]
    args += ["--cache_dir", str(trained["root"] / "cache"), *fast, "--encoders.train_image_tower", "true"]
    args += ["--trainer.max_steps", "4", "--trainer.validate_every", "2"]
    train.main(args)
    detector = load_detector(trained["runs"] / "news" / "tuned")
    tuned = detector.model.image_tower
    assert tuned is not None and any(p.requires_grad for p in tuned.parameters())
    pretrained = create_tower("efficientnet_lite0", image_size=64)
    changed = [
        name
        for (name, a), (_, b) in zip(tuned.state_dict().items(), pretrained.state_dict().items())
        if a.dtype.is_floating_point and not torch.equal(a, b)
    ]
    assert changed  # the checkpoint carries the fine-tuned tower
    result = detect.main(
        [
            "--run",
            str(trained["runs"] / "news" / "tuned"),
            "--text",
            "a red square",
            "--image",
            str(trained["root"] / "img" / "red-square.png"),
        ]
    )[0]
    assert 0.0 <= result["prob_fake"] <= 1.0


def test_training_posts_get_cross_fitted_clip_features(trained: dict, fast: list[str], tmp_path: Path) -> None:
    from domains.news.detector_training import prepare_data
    from shared.cli import parse_config

    args = ["--input", str(trained["shards"]), "--cache_dir", str(trained["root"] / "cache"), *fast]
    config = parse_config(train.TrainConfig, [*args, "--encoders.alignment_folds", "2"])
    prepared = prepare_data(config, tmp_path)
    in_sample = prepared.encoders.finish(prepared.table.base)  # final projections, fitted on all train pairs
    rows = prepared.rows
    assert not np.allclose(prepared.features["clip_text"][rows["train"]], in_sample["clip_text"][rows["train"]])
    for split in ("val", "test"):
        np.testing.assert_array_equal(
            prepared.features["clip_image"][rows[split]], in_sample["clip_image"][rows[split]]
        )
    assert (tmp_path / "clip_alignment" / "fold-0" / "metrics.csv").is_file()
    assert (tmp_path / "clip_alignment" / "fold-1" / "metrics.csv").is_file()


def last_train_step(run_dir: Path) -> int:
    return max(row["step"] for row in read_metrics(run_dir) if row["phase"] == "train")


def test_train_marks_a_finished_run_the_explorer_finds(trained: dict) -> None:
    run = RunFolder(trained["run"])
    marker = run.marker()
    assert marker["command"] == "domains.news.train" and marker["run_id"] == "news/tiny"
    assert {"config.yaml", "metrics.csv", "detector.json", "eval/metrics.json"} <= set(marker["outputs"])
    stored = json.loads((run.path / "eval" / "metrics.json").read_text())
    assert marker["summary"]["roc_auc"] == trained["result"]["test"]["roc_auc"] == stored["roc_auc"]
    found = finished_runs(trained["runs"], "news", command="domains.news.train")
    assert run.path in [folder.path for folder in found]
    assert run.path not in [folder.path for folder in finished_runs(trained["runs"], "news", command="x")]


def test_saved_config_is_the_budget_and_seed_that_ran(trained: dict, fast: list[str]) -> None:
    common = ["--input", str(trained["shards"]), "--runs_root", str(trained["runs"])]
    common += ["--cache_dir", str(trained["root"] / "cache"), *fast, "--trainer.max_steps", "7"]
    losses = {}
    for name, seed in (("seed5", 5), ("seed5-again", 5), ("seed6", 6)):
        train.main([*common, "--run_name", name, "--trainer.seed", str(seed)])
        run = trained["runs"] / "news" / name
        saved = yaml.safe_load((run / "config.yaml").read_text())
        assert saved["trainer"]["max_steps"] == 7 and saved["trainer"]["seed"] == seed
        assert last_train_step(run) == 7
        losses[name] = [r["value"] for r in read_metrics(run) if r["phase"] == "train" and r["metric"] == "loss"]
    assert losses["seed5"] == losses["seed5-again"]  # the seed decides the run ...
    assert losses["seed5"] != losses["seed6"]  # ... and is used


def test_an_epoch_budget_is_resolved_before_the_config_is_saved(trained: dict, fast: list[str]) -> None:
    args = ["--input", str(trained["shards"]), "--runs_root", str(trained["runs"]), "--run_name", "epochs"]
    args += ["--cache_dir", str(trained["root"] / "cache"), *fast]
    args += ["--trainer.max_steps", "null", "--trainer.max_epochs", "2", "--trainer.validate_every", "0"]
    train.main(args)
    run = trained["runs"] / "news" / "epochs"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    steps = 2 * (16 // 8)  # 16 training posts in batches of 8
    assert saved["trainer"]["max_steps"] == steps and saved["trainer"]["max_epochs"] == 2
    assert last_train_step(run) == steps


def test_detect_prints_pure_json(trained: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = str(trained["root"] / "img" / "red-square.png")
    capsys.readouterr()
    run_command(detect.main, ["--run", str(trained["run"]), "--text", "a red square", "--image", image])
    single = json.loads(capsys.readouterr().out)
    assert single["label"] in ("real", "fake")
    run_command(
        detect.main, ["--run", str(trained["run"]), "--input", str(trained["posts"]), "--out_dir", str(tmp_path)]
    )
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary == {"posts": 25, "flagged_fake": summary["flagged_fake"], "skipped": 1, "output": summary["output"]}
    assert Path(summary["output"]) == tmp_path / "posts.results.jsonl" and "next:" in captured.err


def test_training_says_so_before_building_the_builtin_shards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from domains.news import ingestion

    monkeypatch.chdir(tmp_path)
    built = []

    def ingest_stub(config: ingestion.IngestConfig) -> dict:
        print("ingesting")
        built.append(config.out_dir)
        Path(config.out_dir).mkdir(parents=True)
        (Path(config.out_dir) / "manifest.json").write_text("{}")
        return {}

    monkeypatch.setattr(ingestion, "ingest_posts", ingest_stub)
    assert ingestion.ensure_builtin_shards(ingestion.DEFAULT_SHARDS) == Path(ingestion.DEFAULT_SHARDS)
    lines = capsys.readouterr().out.splitlines()
    assert built == [ingestion.DEFAULT_SHARDS] and lines[1] == "ingesting"
    assert "python -m domains.news.ingest --out_dir runs/news/shards-builtin" in lines[0]
    ingestion.ensure_builtin_shards(ingestion.DEFAULT_SHARDS)  # built: nothing said, nothing done
    assert built == [ingestion.DEFAULT_SHARDS] and capsys.readouterr().out == ""


# ---------------------------------------------------------------------------------------- --help documentation
def documented_fields(config_cls: type, prefix: str = "") -> dict[str, str]:
    """``{flag: docstring}`` of every field, recursing into the nested configs news owns (not the core's)."""
    import dataclasses

    from domains.news.frozen_encoders import EncoderConfig
    from domains.news.model import HeadConfig

    docs = field_docstrings(config_cls)
    flags = {}
    for item in dataclasses.fields(config_cls):
        flags[prefix + item.name] = docs[item.name]
        default = item.default_factory() if item.default_factory is not dataclasses.MISSING else item.default
        if type(default) in (EncoderConfig, HeadConfig):
            flags |= documented_fields(type(default), f"{prefix}{item.name}.")
    return flags


def undocumented(config_cls: type) -> list[str]:
    """Fields without a docstring, or whose docstring's first words ``--help`` does not show."""
    shown = " ".join(build_parser(config_cls).format_help().split())
    missing = []
    for flag, doc in documented_fields(config_cls).items():
        first_words = " ".join(doc.split()[:4]).rstrip(".")
        if not doc.strip() or f"--{flag}" not in shown or first_words not in shown:
            missing.append(flag)
    return missing


@pytest.mark.parametrize(
    "config_cls",
    [ingest.IngestConfig, train.TrainConfig, evaluate.EvaluateConfig, detect.DetectConfig, embed.EmbedConfig,
     ablate.AblateConfig],
)  # fmt: skip
def test_help_documents_every_option(config_cls: type) -> None:
    assert undocumented(config_cls) == []


def test_the_help_check_catches_an_undocumented_field() -> None:
    import dataclasses

    @dataclasses.dataclass
    class Partly:
        """A config with one documented and one undocumented field."""

        documented: int = 1
        """How many things."""
        bare: int = 2

    assert undocumented(Partly) == ["bare"]
