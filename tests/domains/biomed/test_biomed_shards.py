"""BIOMEDICA-format shards: decoding, filters through the core stream, gated HF-style streaming over HTTP."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from biomed_fixtures import biomedica_sample

from domains.biomed.biomedica import (
    BiomedicaDecoder,
    BiomedicaFilter,
    huggingface_shard_urls,
    license_subset,
    read_biomedica_sample,
)
from shared.shard_stream import ShardStream
from shared.shards import ShardWriter


def identity_transform(image) -> torch.Tensor:
    return torch.zeros(3, 4, 4)


def character_tokenizer(texts: list[str]) -> torch.Tensor:
    return torch.tensor([[ord(c) for c in text[:8].ljust(8)] for text in texts])


def write_shards(folder: Path, samples: list[dict], per_shard: int = 4) -> Path:
    with ShardWriter(folder, prefix="bmca", max_samples=per_shard, concept_fields=("image_primary_label",)) as writer:
        for sample in samples:
            writer.write(sample)
    return folder


def stream_keys(urls: str, rules: BiomedicaFilter | None = None, **kwargs) -> tuple[list[str], dict]:
    rules = rules or BiomedicaFilter()
    decoder = BiomedicaDecoder(identity_transform, character_tokenizer, rules)
    stream = ShardStream(urls, decoder, batch_size=3, shuffle_buffer=0, filters=rules.stream_filters(), **kwargs)
    keys = [key for batch in stream.batches(0, 0) for key in batch["key"]]
    return keys, stream.report()


@pytest.mark.parametrize(
    ("licence", "subset"),
    [("CC BY", "commercial"), ("CC BY-SA 4.0", "commercial"), ("CC0", "commercial"), ("cc-by-nc-nd", "noncommercial"),
     ("CC BY-NC", "noncommercial"), ("NO-CC CODE", "other"), (None, "other")],
)  # fmt: skip
def test_license_subsets(licence: str | None, subset: str) -> None:
    assert license_subset(licence) == subset


def test_decoding_keeps_fields() -> None:
    raw = biomedica_sample("b1-PMC1-0-7", "Figure 1. Histology.", article_title="A paper")
    raw = {k: (v.encode() if isinstance(v, str) and k != "__key__" else v) for k, v in raw.items()}
    sample = read_biomedica_sample(raw)
    assert sample["key"] == "b1-PMC1-0-7" and sample["caption"] == "Figure 1. Histology."
    assert sample["metadata"]["article_title"] == "A paper" and sample["image"].size == (32, 32)
    with pytest.raises(ValueError, match="sample b1-PMC1-0-7: no caption"):
        read_biomedica_sample({"__key__": "b1-PMC1-0-7", "jpg": raw["jpg"]})


def test_filters_select_exactly_the_matching_samples(tmp_path: Path) -> None:
    samples = [
        biomedica_sample("s00", article_license="CC BY"),
        biomedica_sample("s01", article_license="CC BY-NC-ND"),
        biomedica_sample("s02", article_license="NO-CC CODE"),
        biomedica_sample("s03", caption="No caption found"),
        biomedica_sample("s04", caption="   "),
        biomedica_sample("s05", size=(16, 64)),
        biomedica_sample("s06", image_primary_label=["Plots & Charts"]),
        biomedica_sample("s07", image_panel_type="multi"),
        biomedica_sample("s08", image_primary_label=["Clinical Imaging"], image_secondary_label=["x-ray"]),
    ]
    urls = str(write_shards(tmp_path / "shards", samples))
    keys, report = stream_keys(urls)
    assert sorted(keys) == ["s00", "s01", "s02", "s06", "s07", "s08"]  # captions and the 16 px side dropped
    assert report["filtered_out"] == 1 and report["samples_failed"] == 2
    assert sorted(stream_keys(urls, BiomedicaFilter(license_subsets=["noncommercial", "other"]))[0]) == ["s01", "s02"]
    assert sorted(stream_keys(urls, BiomedicaFilter(concepts=["clinical imaging", "Plots & Charts"]))[0]) == [
        "s06",
        "s08",
    ]
    assert sorted(stream_keys(urls, BiomedicaFilter(concepts=["X-RAY"]))[0]) == ["s08"]
    assert sorted(stream_keys(urls, BiomedicaFilter(panel_types=["multi"]))[0]) == ["s07"]
    with pytest.raises(ValueError, match="unknown licence subset"):
        BiomedicaFilter(license_subsets=["academic"])


def test_concept_balancing_caps_the_frequent_concept(tmp_path: Path) -> None:
    samples = [biomedica_sample(f"p{i:03d}", image_primary_label=["Plots & Charts"]) for i in range(60)]
    samples += [biomedica_sample(f"m{i:03d}", image_primary_label=["Microscopy"]) for i in range(6)]
    urls = str(write_shards(tmp_path / "shards", samples, per_shard=20))
    keys, _ = stream_keys(urls, balance={"field": "image_primary_label", "threshold": 6})
    assert sum(key.startswith("m") for key in keys) == 6  # the rare concept is always kept
    assert 0 < sum(key.startswith("p") for key in keys) < 20  # the frequent one is cut to about 6 of 60


class GatedShardHandler(http.server.SimpleHTTPRequestHandler):
    """Serves <root>/datasets/<repo>/resolve/<rev>/<file> only with the expected bearer token."""

    token = "hf_test_token_123"  # noqa: S105 — a test value
    seen_authorization: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 — http.server's naming
        self.seen_authorization.append(self.headers.get("Authorization"))
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            self.send_error(401, "missing or wrong token")
            return
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def gated_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "hub"
    handler = lambda *a, **k: GatedShardHandler(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    GatedShardHandler.seen_authorization = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_gated_streaming_sends_the_token_header(gated_server, monkeypatch) -> None:
    endpoint, root = gated_server
    shard_dir = root / "datasets" / "BIOMEDICA" / "tiny" / "resolve" / "main" / "commercial"
    write_shards(shard_dir, [biomedica_sample(f"k{i}") for i in range(6)], per_shard=3)
    shards = ["commercial/bmca-000001.tar", "commercial/bmca-000000.tar"]
    urls = huggingface_shard_urls("BIOMEDICA/tiny", shards, endpoint=endpoint, token_env="TEST_HF_TOKEN")  # noqa: S106
    assert all(GatedShardHandler.token not in url for url in urls)  # the token never sits in a URL
    assert urls[0].endswith("/datasets/BIOMEDICA/tiny/resolve/main/commercial/bmca-000000.tar")

    monkeypatch.setenv("TEST_HF_TOKEN", GatedShardHandler.token)
    keys, report = stream_keys("::".join(urls))
    assert sorted(keys) == [f"k{i}" for i in range(6)] and report["shards_failed"] == 0
    assert GatedShardHandler.seen_authorization == [f"Bearer {GatedShardHandler.token}"] * 2

    monkeypatch.setenv("TEST_HF_TOKEN", "wrong")
    keys, report = stream_keys("::".join(urls))
    assert keys == [] and report["shards_failed"] == 2


def test_public_sets_get_plain_urls() -> None:
    urls = huggingface_shard_urls("org/set", ["b.tar", "a.tar"], token_env=None)
    assert urls == ["https://huggingface.co/datasets/org/set/resolve/main/a.tar",
                    "https://huggingface.co/datasets/org/set/resolve/main/b.tar"]  # fmt: skip
    with pytest.raises(ValueError, match="environment variable name"):
        huggingface_shard_urls("org/set", ["a.tar"], token_env="X; rm -rf /")  # noqa: S106


def test_shard_source_check_refuses_only_a_source_with_no_readable_shard(tmp_path: Path) -> None:
    import io
    import tarfile

    from domains.biomed.biomedica import check_shard_source
    from shared.user_errors import UserError

    good = tmp_path / "mixed" / "shard-000000.tar"
    good.parent.mkdir()
    with tarfile.open(good, "w") as archive:
        info = tarfile.TarInfo("a.txt")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    (tmp_path / "mixed" / "shard-000001.tar").write_bytes(b"\x00garbage" * 10)
    check_shard_source(str(tmp_path / "mixed"), "--data.train")  # the stream skips and counts the bad one
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "shard-000000.tar").write_bytes(b"not a tar at all")
    with pytest.raises(UserError, match=r"^--data\.train .*shard-000000\.tar: not a tar shard"):
        check_shard_source(str(tmp_path / "bad"), "--data.train")
    with pytest.raises(UserError, match="--data.validation"):
        check_shard_source(str(tmp_path / "nowhere"), "--data.validation")
