"""ShardWriter and read_manifest: fields round-trip, limits hold, the manifest tells the truth."""

from __future__ import annotations

import collections
import hashlib
import io
import json
import tarfile

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from shared.shards import MANIFEST_NAME, ManifestError, ShardWriter, read_manifest


def read_back(folder) -> dict[str, dict]:
    """Every sample in a folder's shards, read with webdataset itself (independent of our reader)."""
    urls = sorted(str(path) for path in folder.glob("*.tar"))
    return {sample["__key__"]: sample for sample in wds.tarfile_samples([{"url": url} for url in urls])}


def test_every_field_type_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    array = rng.normal(size=(3, 4)).astype(np.float32)
    jpeg = io.BytesIO()
    Image.fromarray(pixels).save(jpeg, format="JPEG")
    metadata = {"article_license": "CC BY", "labels": ["a", "b"], "size": [5, 6], "note": "µm ✓"}
    with ShardWriter(tmp_path) as writer:
        writer.write(
            {
                "__key__": "pmc1-fig1",
                "jpg": jpeg.getvalue(),
                "png": Image.fromarray(pixels),
                "txt": "A caption with ünïcode",
                "json": metadata,
                "npy": array,
                "cls": 7,
                "dcm": b"\x00raw bytes\xff",
            }
        )

    sample = read_back(tmp_path)["pmc1-fig1"]
    assert sample["jpg"] == jpeg.getvalue()
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(sample["png"]))), pixels)
    assert sample["txt"].decode("utf-8") == "A caption with ünïcode"
    assert json.loads(sample["json"]) == metadata
    np.testing.assert_array_equal(np.load(io.BytesIO(sample["npy"])), array)
    assert int(sample["cls"]) == 7
    assert sample["dcm"] == b"\x00raw bytes\xff"


def test_count_limit_splits_shards_and_manifest_counts_them(write_shards_fn, tmp_path):
    samples = write_shards_fn(tmp_path, num_samples=23, per_shard=5)
    manifest = read_manifest(tmp_path)

    assert [shard["samples"] for shard in manifest["shards"]] == [5, 5, 5, 5, 3]
    assert manifest["num_samples"] == 23 and manifest["num_shards"] == 5 and manifest["complete"]
    assert manifest["url_pattern"] == "shard-{000000..000004}.tar"
    # Per-shard counts and digests match the files on disk.
    for shard in manifest["shards"]:
        path = tmp_path / shard["name"]
        assert shard["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert shard["bytes"] == path.stat().st_size
        with tarfile.open(path) as archive:
            assert len({name.split(".")[0] for name in archive.getnames()}) == shard["samples"]
    assert set(read_back(tmp_path)) == {sample["__key__"] for sample in samples}
    assert not list(tmp_path.glob("*.partial"))


def test_manifest_statistics_match_an_independent_count(write_shards_fn, tmp_path):
    samples = write_shards_fn(tmp_path, num_samples=40, per_shard=16)
    manifest = read_manifest(tmp_path)

    licences = collections.Counter(sample["json"]["article_license"] for sample in samples)
    concepts = collections.Counter(label for sample in samples for label in sample["json"]["image_primary_label"])
    panels = collections.Counter(sample["json"]["image_panel_type"] for sample in samples)
    classes = collections.Counter(str(sample["cls"]) for sample in samples)
    assert manifest["json_field_counts"]["article_license"] == dict(licences)
    assert manifest["json_field_counts"]["image_panel_type"] == dict(panels)
    assert manifest["concept_counts"]["image_primary_label"] == dict(concepts)
    assert manifest["label_counts"]["cls"] == dict(classes)
    assert manifest["fields"]["txt"] == {
        "samples": 40,
        "bytes": sum(len(sample["txt"].encode("utf-8")) for sample in samples),
    }
    assert manifest["fields"]["jpg"]["bytes"] == sum(len(sample["jpg"]) for sample in samples)


def test_byte_limit_closes_shards(tmp_path):
    payload = b"x" * 1000
    with ShardWriter(tmp_path, max_samples=1000, max_bytes=2500) as writer:
        for index in range(10):
            writer.write({"__key__": f"s{index}", "bin": payload})
    manifest = read_manifest(tmp_path)
    # 1000-byte samples: a shard closes once it holds >= 2500 bytes, i.e. after 3 samples.
    assert [shard["samples"] for shard in manifest["shards"]] == [3, 3, 3, 1]
    assert manifest["fields"]["bin"] == {"samples": 10, "bytes": 10_000}


def test_skipped_inputs_are_recorded_with_reasons(make_sample_fn, tmp_path):
    with ShardWriter(tmp_path) as writer:
        writer.write(make_sample_fn(0))
        writer.skip("pmc2/fig3.png", "caption empty")
        writer.skip("pmc2/fig4.png", "caption empty")
        writer.skip("pmc9/fig1.png", "image smaller than 20 px")
    manifest = read_manifest(tmp_path)
    assert manifest["skipped_total"] == 3
    assert manifest["skipped_by_reason"] == {"caption empty": 2, "image smaller than 20 px": 1}
    assert manifest["skipped"][2] == {"source": "pmc9/fig1.png", "reason": "image smaller than 20 px"}


def test_error_inside_the_writer_keeps_written_samples_and_marks_manifest_incomplete(make_sample_fn, tmp_path):
    with pytest.raises(RuntimeError, match="source went away"), ShardWriter(tmp_path, max_samples=4) as writer:
        for index in range(6):
            writer.write(make_sample_fn(index))
        raise RuntimeError("source went away")
    manifest = read_manifest(tmp_path)
    assert manifest["complete"] is False
    assert "source went away" in manifest["error"]
    assert manifest["num_samples"] == 6
    assert len(read_back(tmp_path)) == 6


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ({"txt": "no key"}, "no string '__key__'"),
        ({"__key__": "a.b", "txt": "x"}, "contains a '.'"),
        ({"__key__": "only-key"}, "no fields"),
        ({"__key__": "bad-json", "json": "{not json"}, "not JSON"),
        ({"__key__": "bad-type", "bin": object()}, "cannot be encoded"),
    ],
)
def test_bad_samples_are_rejected_with_their_key_and_nothing_is_written(make_sample_fn, tmp_path, sample, message):
    with ShardWriter(tmp_path, track_json_fields=["article_license"]) as writer:
        writer.write(make_sample_fn(0))
        with pytest.raises(ValueError, match=message):
            writer.write(sample)
    assert read_manifest(tmp_path)["num_samples"] == 1
    assert list(read_back(tmp_path)) == ["sample00000"]


def test_repeated_key_is_rejected(make_sample_fn, tmp_path):
    with ShardWriter(tmp_path) as writer:
        writer.write(make_sample_fn(0))
        with pytest.raises(ValueError, match="repeats"):
            writer.write(make_sample_fn(0))


def test_existing_shards_are_not_overwritten_unless_asked(make_sample_fn, write_shards_fn, tmp_path):
    write_shards_fn(tmp_path, num_samples=3, per_shard=10)
    with pytest.raises(FileExistsError, match="shard-000000.tar"):
        ShardWriter(tmp_path)
    with ShardWriter(tmp_path, overwrite=True) as writer:
        writer.write(make_sample_fn(99))
    assert list(read_back(tmp_path)) == ["sample00099"]


def test_read_manifest_over_http_equals_local(http_server, write_shards_fn, tmp_path):
    write_shards_fn(tmp_path, num_samples=5, per_shard=2)
    with http_server(tmp_path) as base_url:
        assert read_manifest(base_url) == read_manifest(tmp_path)
        assert read_manifest(f"{base_url}/{MANIFEST_NAME}") == read_manifest(tmp_path)
        with pytest.raises(ManifestError, match="HTTP 404"):
            read_manifest(f"{base_url}/missing")


def test_read_manifest_through_pipe_and_s3_commands(write_shards_fn, tmp_path):
    write_shards_fn(tmp_path, num_samples=3, per_shard=2)
    local = read_manifest(tmp_path)
    assert read_manifest(f"pipe:cat {tmp_path}/{MANIFEST_NAME}") == local
    fake_s3 = f"sh -c 'cat {tmp_path}/$(basename \"$0\")' {{url}}"
    assert read_manifest("s3://bucket/shards", s3_command=fake_s3) == local
    with pytest.raises(ManifestError, match="exit 1"):
        read_manifest("pipe:cat /nonexistent/manifest.json")


def test_read_manifest_errors_name_the_location(tmp_path):
    with pytest.raises(ManifestError, match=str(tmp_path)):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{broken")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text('{"some": "json"}')
    with pytest.raises(ManifestError, match="not a shard manifest"):
        read_manifest(tmp_path)
