"""Model configs as data, strict validation, loading from a hub-layout folder, continual pretraining,
locking, WiSE-FT, the loss, and the open_clip local-dir export round trip."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from domains.biomed.export_open_clip import export_local_dir
from domains.biomed.model import BiomedClipModel, lock_towers, wise_ft_merge
from domains.biomed.open_clip_loading import (
    OpenClipConfigError,
    count_parameters,
    load_open_clip_config,
    load_open_clip_model,
    validate_open_clip_config,
)
from shared.contrastive_model import ContrastiveModel
from shared.trainer import ContrastiveTrainable

CAPTIONS = ["chest radiograph with a small opacity", "fluorescence microscopy of green nuclei", "brain MRI"]


@pytest.fixture(scope="module")
def tiny() -> object:
    torch.manual_seed(0)
    return load_open_clip_model("tiny", pretrained_towers=False)


def images(size: int, count: int = 3) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (size + 8, size, 3), dtype=np.uint8)) for _ in range(count)]


def test_stale_keys_are_translated_or_rejected(caplog) -> None:
    config, _, _ = load_open_clip_config("biomedclip")
    text_cfg = config["model_cfg"]["text_cfg"]
    stale = json.loads(json.dumps(config))
    stale["model_cfg"]["text_cfg"]["pooler_type"] = stale["model_cfg"]["text_cfg"].pop("hf_pooler_type")
    stale["model_cfg"]["text_cfg"]["proj"] = stale["model_cfg"]["text_cfg"].pop("hf_proj_type")
    with caplog.at_level(logging.WARNING):
        fixed = validate_open_clip_config(stale, "copy.json")
    assert fixed["model_cfg"]["text_cfg"] == text_cfg
    assert "translated stale text_cfg.pooler_type" in caplog.text
    with pytest.raises(OpenClipConfigError, match=r"copy.json: text_cfg.(proj|pooler_type) is a stale key"):
        validate_open_clip_config(stale, "copy.json", translate_stale=False)
    stale["model_cfg"]["text_cfg"]["hf_pooler_type"] = "mean_pooler"
    with pytest.raises(OpenClipConfigError, match="both stale pooler_type"):
        validate_open_clip_config(stale, "copy.json")
    typo = json.loads(json.dumps(config))
    typo["model_cfg"]["vision_cfg"]["patch_sise"] = 16
    with pytest.raises(OpenClipConfigError, match=r"typo.json: .*vision_cfg: \['patch_sise'\]"):
        validate_open_clip_config(typo, "typo.json")


def test_full_biomedclip_architecture_builds_offline() -> None:
    loaded = load_open_clip_model("biomedclip", pretrained_towers=False)
    model = loaded.model
    assert 195_000_000 < count_parameters(model) < 197_000_000
    assert type(model.text.pooler).__name__ == "ClsLastHiddenStatePooler"
    assert [tuple(layer.weight.shape) for layer in model.text.proj if hasattr(layer, "weight")] == [
        (640, 768),
        (512, 640),
    ]
    assert model.visual.trunk.patch_embed.proj.kernel_size == (16, 16) and model.text.config.hidden_size == 768
    assert loaded.preprocess_val.transforms[-1].mean == (0.48145466, 0.4578275, 0.40821073)


def test_hub_layout_folder_with_stale_keys_loads_with_the_right_pooler(tiny, tmp_path: Path) -> None:
    export = export_local_dir(BiomedClipModel(tiny.model), tiny, tmp_path / "hub_copy")
    config = json.loads((export / "open_clip_config.json").read_text())
    text_cfg = config["model_cfg"]["text_cfg"]
    text_cfg["pooler_type"] = text_cfg.pop("hf_pooler_type")  # as in old third-party copies
    (export / "open_clip_config.json").write_text(json.dumps(config))
    # open_clip 3.3 itself stops with a TypeError that names neither the file nor the fix:
    with pytest.raises(TypeError, match="pooler_type"):
        open_clip.create_model(f"local-dir:{export}")
    loaded = load_open_clip_model(f"local-dir:{export}")
    assert type(loaded.model.text.pooler).__name__ == "ClsLastHiddenStatePooler"
    for name, tensor in tiny.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name


def test_continual_pretraining_starts_from_any_open_clip_checkpoint(tiny, tmp_path: Path) -> None:
    state = {f"module.{name}": tensor.clone() + 0.5 for name, tensor in tiny.model.state_dict().items()
             if tensor.is_floating_point()}  # fmt: skip
    state.update({f"module.{n}": t for n, t in tiny.model.state_dict().items() if not t.is_floating_point()})
    checkpoint = tmp_path / "epoch_3.pt"
    torch.save({"epoch": 3, "state_dict": state}, checkpoint)
    loaded = load_open_clip_model("tiny", checkpoint=str(checkpoint))
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, state[f"module.{name}"]), name
    with pytest.raises(FileNotFoundError, match="missing.pt: checkpoint file not found"):
        load_open_clip_model("tiny", checkpoint=str(tmp_path / "missing.pt"))


def test_tower_locking() -> None:
    loaded = load_open_clip_model("tiny", pretrained_towers=False)
    lock_towers(loaded.model, lock_image=True, lock_text=True, text_unlocked_layers=1)
    trainable = {name for name, p in loaded.model.named_parameters() if p.requires_grad}
    assert not any(name.startswith("visual.") for name in trainable)
    assert any(name.startswith("text.transformer.encoder.layer.1.") for name in trainable)
    assert not any(
        name.startswith(("text.transformer.encoder.layer.0.", "text.transformer.embeddings")) for name in trainable
    )
    assert {"text.proj.0.weight", "text.proj.2.weight"} <= trainable


def test_wise_ft_merge() -> None:
    start = {"w": torch.tensor([0.0, 2.0]), "ids": torch.tensor([1, 2])}
    tuned = {"w": torch.tensor([4.0, 6.0]), "ids": torch.tensor([3, 4])}
    merged = wise_ft_merge(start, tuned, 0.25)
    assert torch.equal(merged["w"], torch.tensor([1.0, 3.0])) and torch.equal(merged["ids"], tuned["ids"])
    assert torch.equal(wise_ft_merge(start, tuned, 0.0)["w"], start["w"])
    with pytest.raises(ValueError, match="alpha must be in"):
        wise_ft_merge(start, tuned, 1.5)
    with pytest.raises(ValueError, match="shape mismatch at w"):
        wise_ft_merge(start, {"w": torch.zeros(3), "ids": tuned["ids"]}, 0.5)


def test_loss_equals_open_clip_clip_loss(tiny) -> None:
    model = BiomedClipModel(tiny.model)
    size = tiny.config["model_cfg"]["vision_cfg"]["image_size"]
    batch = {"image": torch.stack([tiny.preprocess_val(im) for im in images(size)]), "text": tiny.tokenizer(CAPTIONS)}
    with torch.no_grad():
        ours = model(batch)
        scale = model.loss.scale(("image", "text"))
        reference = open_clip.ClipLoss()(ours["embeddings"]["image"], ours["embeddings"]["text"], scale)
    assert torch.allclose(ours["loss"], reference, atol=1e-6)


def test_export_reloads_in_plain_open_clip_with_identical_embeddings(tiny, tmp_path: Path) -> None:
    model = BiomedClipModel(tiny.model).eval()
    with torch.no_grad():
        model.loss.logit_scales["image-text"].fill_(3.0)
    export = export_local_dir(model, tiny, tmp_path / "export")
    weight_like = [p.name for p in export.iterdir() if p.suffix in (".safetensors", ".bin", ".pth", ".pt")]
    assert weight_like == ["open_clip_model.safetensors"]
    assert {"open_clip_config.json", "config.json", "tokenizer.json", "tokenizer_config.json"} <= {
        p.name for p in export.iterdir()
    }
    reloaded, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{export}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{export}")
    reloaded.eval()
    pictures = images(tiny.config["model_cfg"]["vision_cfg"]["image_size"])
    with torch.no_grad():
        ours_image = model.encode("image", torch.stack([tiny.preprocess_val(im) for im in pictures]))
        ours_text = model.encode("text", tiny.tokenizer(CAPTIONS))
        theirs_image = reloaded.encode_image(torch.stack([preprocess(im) for im in pictures]), normalize=True)
        theirs_text = reloaded.encode_text(tokenizer(CAPTIONS), normalize=True)
    assert torch.equal(ours_image, theirs_image) and torch.equal(ours_text, theirs_text)
    assert float(reloaded.logit_scale.detach()) == pytest.approx(3.0)


def test_hf_hub_source_reads_the_hub_layout(tiny, tmp_path: Path, monkeypatch) -> None:
    """hf-hub:org/repo fetches open_clip_config.json and the weights (served here from a local folder)."""
    import huggingface_hub
    import open_clip.pretrained

    export = export_local_dir(BiomedClipModel(tiny.model), tiny, tmp_path / "repo")
    requested = []

    def fake_download(repo_id: str, filename: str, **kwargs) -> str:
        requested.append((repo_id, filename))
        return str(export / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(open_clip.pretrained, "download_pretrained_from_hf",
                        lambda repo_id, **kwargs: fake_download(repo_id, "open_clip_model.safetensors"))  # fmt: skip
    loaded = load_open_clip_model("hf-hub:org/tiny-biomed")
    assert requested == [
        ("org/tiny-biomed", "open_clip_config.json"),
        ("org/tiny-biomed", "open_clip_model.safetensors"),
    ]
    for name, tensor in tiny.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name


def test_the_model_is_the_core_contrastive_model_and_the_loss_owns_the_temperature(tiny) -> None:
    model = BiomedClipModel(tiny.model)
    assert isinstance(model, ContrastiveModel) and isinstance(model, ContrastiveTrainable)
    trainable_scales = [name for name, p in model.named_parameters() if "logit_scale" in name and p.requires_grad]
    assert trainable_scales == ["loss.logit_scales.image-text"]
    assert all(name.startswith(("clip.", "loss.")) for name in model.state_dict())  # open_clip's names, no copies
    before = float(tiny.model.logit_scale.detach())
    with torch.no_grad():
        model.loss.logit_scales["image-text"].fill_(2.5)
    assert float(tiny.model.logit_scale.detach()) == before  # untouched while training ...
    assert float(model.open_clip_model().logit_scale.detach()) == pytest.approx(2.5)  # ... written at export
    with torch.no_grad():
        tiny.model.logit_scale.fill_(before)  # the fixture is shared by this module's tests


PLAIN_OPEN_CLIP_SCRIPT = """
import sys, numpy, open_clip, torch
from PIL import Image
folder, out = sys.argv[1], sys.argv[2]
model, _, preprocess = open_clip.create_model_and_transforms("local-dir:" + folder)
tokenizer = open_clip.get_tokenizer("local-dir:" + folder)
model.eval()
images = torch.stack([preprocess(Image.open(path)) for path in sys.argv[3:]])
with torch.no_grad():
    numpy.save(out + "_image.npy", model.encode_image(images, normalize=True).numpy())
    numpy.save(out + "_text.npy", model.encode_text(tokenizer(CAPTIONS), normalize=True).numpy())
""".replace("CAPTIONS", repr(CAPTIONS))


def test_a_moved_export_loads_in_plain_open_clip_elsewhere_with_the_same_embeddings(tmp_path: Path) -> None:
    import os
    import shutil
    import subprocess
    import sys

    from domains.biomed.model import BiomedClipModel

    torch.manual_seed(0)
    loaded = load_open_clip_model("demo", pretrained_towers=False)  # the demo's MiniLM text architecture
    model = BiomedClipModel(loaded.model).eval()
    export = export_local_dir(model, loaded, tmp_path / "run" / "export")
    config_text = (export / "open_clip_config.json").read_text()
    assert str(tmp_path) not in config_text  # nothing in the config names where the folder was written
    assert json.loads(config_text)["model_cfg"]["text_cfg"]["hf_model_name"] == "sentence-transformers/all-MiniLM-L6-v2"
    moved = tmp_path / "elsewhere" / "copied_export"
    shutil.copytree(export, moved)
    shutil.rmtree(tmp_path / "run")  # the original place is gone

    pictures = images(loaded.config["model_cfg"]["vision_cfg"]["image_size"])
    paths = []
    for index, picture in enumerate(pictures):
        paths.append(tmp_path / f"picture{index}.png")
        picture.save(paths[-1])
    with torch.no_grad():
        ours_image = model.encode("image", torch.stack([loaded.preprocess_val(im) for im in pictures])).numpy()
        ours_text = model.encode("text", loaded.tokenizer(CAPTIONS)).numpy()

    # a fresh process, another working directory, offline: plain open_clip and an HF cache that knows the
    # text encoder's architecture (as on any machine that has used that encoder; online, the Hub serves it)
    cache = tmp_path / "hf_cache" / "models--sentence-transformers--all-MiniLM-L6-v2"
    revision = "0" * 40
    (cache / "refs").mkdir(parents=True)
    (cache / "refs" / "main").write_text(revision)
    (cache / "snapshots" / revision).mkdir(parents=True)
    shutil.copy(moved / "config.json", cache / "snapshots" / revision / "config.json")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf_cache")}
    (tmp_path / "cwd").mkdir()
    result = subprocess.run([sys.executable, "-c", PLAIN_OPEN_CLIP_SCRIPT, str(moved), str(tmp_path / "theirs"),
                             *map(str, paths)], cwd=tmp_path / "cwd", env=env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert np.abs(np.load(tmp_path / "theirs_image.npy") - ours_image).max() < 1e-5
    assert np.abs(np.load(tmp_path / "theirs_text.npy") - ours_text).max() < 1e-5

    # the suite's own loader needs neither the Hub nor a cache: the folder carries the text config
    reloaded = load_open_clip_model(f"local-dir:{moved}")
    with torch.no_grad():
        again = BiomedClipModel(reloaded.model).eval().encode("text", reloaded.tokenizer(CAPTIONS)).numpy()
    assert np.abs(again - ours_text).max() < 1e-5
