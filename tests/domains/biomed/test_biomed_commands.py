"""The commands end to end on the tiny model: pretrain (train, evaluate, export, store), evaluate, embed,
export, ingest of an image folder, WiSE-FT wiring, and --help documenting every option."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from domains.biomed import embed, evaluate, export, heldout, ingest, pretrain
from domains.biomed.demo import build_demo_corpus
from domains.biomed.dicom import DicomChainConfig
from domains.biomed.open_clip_loading import load_open_clip_model
from shared.checkpoints import CheckpointManager
from shared.cli import build_parser, field_docstrings
from shared.run_folder import RunFolder, finished_runs, sha256_of
from shared.store import EmbeddingStore

TINY = ["--model.source", "tiny", "--model.pretrained_towers", "false", "--data.demo_image_size", "32",
        "--data.batch_size", "16", "--trainer.log_every", "2", "--trainer.checkpoint_every", "4",
        "--trainer.warmup_steps", "1"]  # fmt: skip


OWNED_CONFIGS = (pretrain.PretrainConfig, pretrain.ModelConfig, pretrain.DataConfig, evaluate.EvaluateConfig,
                 export.ExportConfig, embed.EmbedConfig, ingest.IngestConfig, DicomChainConfig)  # fmt: skip


def field_names(config_cls: type, prefix: str = "") -> list[str]:
    names = []
    for item in dataclasses.fields(config_cls):
        default = item.default_factory() if item.default_factory is not dataclasses.MISSING else item.default
        if dataclasses.is_dataclass(default):
            names += field_names(type(default), f"{prefix}{item.name}.")
        else:
            names.append(prefix + item.name)
    return names


def field_docs(config_cls: type, prefix: str = "") -> dict[str, str]:
    """``{flag name: docstring}`` of every field, recursively through the nested dataclasses this domain owns."""
    docs = {}
    texts = field_docstrings(config_cls)
    for item in dataclasses.fields(config_cls):
        default = item.default_factory() if item.default_factory is not dataclasses.MISSING else item.default
        docs[prefix + item.name] = texts[item.name]
        if dataclasses.is_dataclass(default) and type(default) in OWNED_CONFIGS:
            docs.update(field_docs(type(default), f"{prefix}{item.name}."))
    return docs


def assert_documented(config_cls: type) -> None:
    """Every option is in --help, and every owned field has a docstring whose first words --help shows."""
    text = build_parser(config_cls).format_help()
    for name in field_names(config_cls):
        assert f"--{name}" in text, f"{config_cls.__name__}: --{name} missing from --help"
    flat = " ".join(text.split())
    for name, doc in field_docs(config_cls).items():
        assert doc.strip(), f"{config_cls.__name__}: --{name} has no docstring"
        first_words = " ".join(doc.split()[:4]).rstrip(".:")  # group titles drop the final period
        assert first_words in flat, f"{config_cls.__name__}: --{name}'s doc {first_words!r} not shown by --help"


@pytest.mark.parametrize(
    ("module", "config_cls"),
    [(pretrain, pretrain.PretrainConfig), (evaluate, evaluate.EvaluateConfig), (export, export.ExportConfig),
     (embed, embed.EmbedConfig), (ingest, ingest.IngestConfig), (heldout, heldout.HeldoutStudyConfig)],
)  # fmt: skip
def test_help_documents_every_option(module, config_cls) -> None:
    assert_documented(config_cls)


def test_help_check_fails_for_an_undocumented_field() -> None:
    @dataclasses.dataclass
    class Undocumented:
        """A config with one undocumented field."""

        documented: int = 1
        """Documented."""
        bare: int = 2

    with pytest.raises(AssertionError, match="--bare has no docstring"):
        assert_documented(Undocumented)


@pytest.mark.parametrize("preset", ["demo", "biomedclip", "bmca", "gpu"])
def test_presets_parse(preset: str) -> None:
    from shared.cli import parse_config

    config = parse_config(pretrain.PretrainConfig, ["--config", f"domains/biomed/configs/{preset}.yaml"])
    if preset == "biomedclip":
        trainer = config.trainer
        assert (trainer.lr, tuple(trainer.betas), trainer.eps, trainer.weight_decay, trainer.warmup_steps) == (
            5e-4, (0.9, 0.98), 1e-6, 0.2, 2000)  # fmt: skip
        assert config.model.grad_checkpointing and config.model.local_loss and config.model.gather_with_grad
    if preset == "bmca":
        assert (config.trainer.lr, tuple(config.trainer.betas), config.trainer.grad_clip_norm) == (
            1e-6,
            (0.9, 0.95),
            1.0,
        )
        assert config.data.batch_size * config.trainer.accum_steps * 4 == 8192


def test_pretrain_demo_pipeline_then_evaluate_embed_export(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "store.duckdb"
    corpus = build_demo_corpus("runs/biomed/demo_corpus", image_size=32, train_variants=1, skimage_crops=1)
    metrics = pretrain.main([*TINY, "--run_name", "t", "--trainer.max_steps", "4", "--store", str(store),
                             "--data.train", str(corpus["train"]), "--data.validation", str(corpus["test"])])  # fmt: skip
    out = capsys.readouterr().out
    run = tmp_path / "runs" / "biomed" / "t"
    for name in (
        "config.yaml",
        "metrics.csv",
        "model.safetensors",
        "eval/metrics.json",
        "export/open_clip_config.json",
    ):
        assert (run / name).is_file(), name
    written = json.loads((run / "eval" / "metrics.json").read_text())
    for phase in ("untrained", "trained"):
        assert 0.0 <= written[phase]["retrieval"]["image_to_text_R@1"] <= 1.0
        assert written[phase]["num_samples"] == 44 and written[phase]["zero_shot"]["num_samples"] == 44
        assert len(written[phase]["zero_shot"]["classes"]) == 45  # unseen true combination vs all others
    assert metrics["training"]["steps"] == 4
    assert f"Run folder: {Path('runs/biomed/t')}" in out and "Next:" in out and "local-dir:" in out
    # the demo prints the held-out numbers: retrieval both ways and zero-shot, untrained vs trained
    for line in ("image→text R@1 on the held-out split:", "text→image R@1 (any image of the caption) on the "
                 "held-out split:", "zero-shot top-1 on the held-out split (45 classes):"):  # fmt: skip
        assert line in out and "(untrained " in out.split(line)[1].splitlines()[0], line
    # Each step beyond training is announced with the command that does it alone, before it runs.
    for announcement in ("python -m domains.biomed.evaluate --run", "python -m domains.biomed.export --run",
                         "python -m domains.biomed.embed --run"):  # fmt: skip
        assert announcement in out.split("Done in")[0], announcement
    # The run folder contract: the marker the explorer finds, listing the export inside the run folder.
    finished = finished_runs(tmp_path / "runs", "biomed", command="domains.biomed.pretrain")
    assert [folder.path for folder in finished] == [run]
    marker = finished[0].marker()
    assert {"config.yaml", "metrics.csv", "model.safetensors", "eval/metrics.json",
            "export/open_clip_config.json", "export/open_clip_model.safetensors"} <= set(marker["outputs"])  # fmt: skip
    assert marker["summary"]["image_to_text_R@1"] == written["trained"]["retrieval"]["image_to_text_R@1"]
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["max_steps"] == 4

    reader = EmbeddingStore(store)
    counts = reader.sql("SELECT modality, count(*) AS n FROM all_embeddings GROUP BY modality ORDER BY modality")
    reader.close()
    assert counts["n"].tolist() == [44, 44]  # the held-out samples, image and text

    evaluate.main(["--run", str(run), "--input", "runs/biomed/demo_corpus/test", "--zero_shot", "demo"])
    again = json.loads((run / "eval" / "metrics.json").read_text())
    assert again["retrieval"]["image_to_text_R@1"] == pytest.approx(
        written["trained"]["retrieval"]["image_to_text_R@1"]
    )
    # The run's marker still lists the rewritten evaluation with its current hash.
    assert finished[0].marker()["outputs"]["eval/metrics.json"]["sha256"] == sha256_of(run / "eval" / "metrics.json")

    exported = export.main(["--run", str(run), "--out_dir", str(tmp_path / "exported")])
    count = embed.main(["--model", str(exported), "--input", "runs/biomed/demo_corpus/test", "--store", str(store),
                        "--run_id", "from-export"])  # fmt: skip
    assert count == 44
    reader = EmbeddingStore(store)
    vectors = reader.sql("SELECT sample_id, run_id, vec FROM all_embeddings WHERE modality = 'image' "
                         "AND run_id IN ('biomed/t', 'from-export')")  # fmt: skip
    reader.close()
    by_run = {run_id: dict(zip(group["sample_id"], group["vec"])) for run_id, group in vectors.groupby("run_id")}
    assert len(by_run["from-export"]) == 44
    for key, vector in by_run["from-export"].items():  # the exported model gives the run's vectors
        np.testing.assert_allclose(np.asarray(vector), np.asarray(by_run["biomed/t"][key]), atol=1e-5)


def test_wise_ft_alpha_zero_returns_the_starting_checkpoint(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    start = load_open_clip_model("tiny", pretrained_towers=False).model.state_dict()
    torch.save({"state_dict": start}, tmp_path / "start.pt")
    pretrain.main([*TINY, "--run_name", "w", "--trainer.max_steps", "2", "--model.checkpoint", "start.pt",
                   "--model.wise_ft_alpha", "0.0", "--export", "false", "--embed", "false",
                   "--evaluate_untrained", "false", "--zero_shot", "none"])  # fmt: skip
    merged = load_file(tmp_path / "runs" / "biomed" / "w" / "model.safetensors")
    latest = CheckpointManager(tmp_path / "runs" / "biomed" / "w" / "checkpoints").latest()
    trained = load_file(latest.with_suffix(".safetensors"))
    name = "visual.conv1.weight"
    assert torch.equal(merged[f"clip.{name}"], start[name])
    assert not torch.equal(trained[f"clip.{name}"], start[name])


def test_ingest_image_folder_with_captions(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "figs").mkdir()
    Image.fromarray(np.full((40, 30, 3), 200, np.uint8)).save(tmp_path / "figs" / "a.png")
    (tmp_path / "figs" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "captions.csv").write_text(
        "filepath,title\na.png,Western blot of protein X\nbroken.png,x\nmissing.png,y\na.png,\n"
    )
    manifest = ingest.main(["--input", "figs", "--captions", "captions.csv", "--dicom.image_size", "32"])
    summary = json.loads(manifest.read_text())
    assert summary["num_samples"] == 1
    reasons = sorted(item["reason"].split(" (")[0] for item in summary["skipped"])
    assert reasons == ["empty caption", "image file not found", "unreadable image"]
    assert "Skipped 3 input(s)" in capsys.readouterr().out
    marker = RunFolder(tmp_path / "runs" / "biomed" / "ingest").marker()
    assert marker["command"] == "domains.biomed.ingest" and "shards/manifest.json" in marker["outputs"]
    assert marker["summary"]["samples"] == 1 and marker["summary"]["skipped"] == 3


def test_heldout_study_compares_untrained_and_trained_over_seeds(tmp_path: Path, capsys) -> None:
    build_demo_corpus(tmp_path / "corpus", image_size=32, train_variants=1, skimage_crops=1)
    result = heldout.main(["--seeds", "[0, 1]", "--max_steps", "2", "--model", "tiny", "--pretrained_towers", "false",
                           "--demo_image_size", "32", "--batch_size", "16", "--demo_dir", str(tmp_path / "corpus"),
                           "--runs_root", str(tmp_path / "runs"), "--out", str(tmp_path / "table.md")])  # fmt: skip
    assert sorted(result.per_seed) == [0, 1]
    for values in result.per_seed.values():
        assert set(values["untrained"]) == set(values["trained"]) and len(values["trained"]) == 3
    table = (tmp_path / "table.md").read_text()
    assert table == result.table and table in capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| ") and "R@1" in line or "zero-shot" in line]
    assert len(rows) == 3 and all(
        row.rstrip(" |").endswith(("supported", "contradicted", "cannot tell")) for row in rows
    )
    assert (tmp_path / "runs" / "biomed" / "heldout-seed1" / "eval" / "metrics.json").is_file()
    # seeds run as separate processes are collected by one last call, without training again
    again = heldout.main(["--seeds", "[0, 1]", "--max_steps", "2", "--model", "tiny", "--pretrained_towers", "false",
                          "--demo_image_size", "32", "--batch_size", "16", "--demo_dir", str(tmp_path / "corpus"),
                          "--runs_root", str(tmp_path / "runs")])  # fmt: skip
    assert again.table == result.table and capsys.readouterr().out.count("read from its finished run folder") == 2
