"""ShardStream: sources and weights, modes, node/worker splits, exact resume, filters, balancing, bad data."""

from __future__ import annotations

import collections
import gzip
import math
import shlex
import tarfile
from pathlib import Path

import pytest

from shared.shard_stream import ConceptBalance, MetadataFilter, ShardStream, TooManyFailuresError
from shared.shards import ShardWriter


def keys_of(batches) -> list[list[str]]:
    return [list(batch["key"]) for batch in batches]


def flat(batches: list[list[str]]) -> list[str]:
    return [key for batch in batches for key in batch]


@pytest.fixture(scope="module")
def shard_dir(write_shards_fn, tmp_path_factory) -> Path:
    """38 samples in shards of 7 (the last holds 3): batches of 5 straddle shard boundaries."""
    folder = tmp_path_factory.mktemp("shards")
    write_shards_fn(folder, num_samples=38, per_shard=7)
    return folder


ALL_KEYS = {f"sample{index:05d}" for index in range(38)}
PATTERN = "shard-{000000..000005}.tar"


# -- epoch mode, decoding, sources -------------------------------------------------------------------


def test_epoch_mode_yields_every_sample_once_in_a_seeded_order(decode_key, shard_dir):
    stream = ShardStream(str(shard_dir / PATTERN), decode_key, batch_size=5, shuffle_buffer=10, seed=3)
    first = keys_of(stream.batches(0))
    again = keys_of(ShardStream(str(shard_dir / PATTERN), decode_key, 5, shuffle_buffer=10, seed=3).batches(0))
    next_epoch = keys_of(stream.batches(1))

    assert sorted(flat(first)) == sorted(ALL_KEYS)
    assert [len(batch) for batch in first] == [5] * 7 + [3]
    assert first == again
    assert flat(next_epoch) != flat(first) and sorted(flat(next_epoch)) == sorted(ALL_KEYS)
    assert stream.report()["samples_decoded"] == 2 * 38


def test_drop_last_drops_the_short_batch(decode_key, shard_dir):
    stream = ShardStream(str(shard_dir), decode_key, batch_size=5, drop_last=True)
    assert [len(batch) for batch in keys_of(stream.batches(0))] == [5] * 7


def test_decoded_fields_are_collated_into_lists_and_tensors(decode_caption, make_sample_fn, shard_dir):
    stream = ShardStream(str(shard_dir / PATTERN), decode_caption, batch_size=4, shuffle_buffer=1)
    batch = next(iter(stream))
    written = {f"sample{index:05d}": make_sample_fn(index, with_image=False)["txt"] for index in range(38)}
    assert [written[key] for key in batch["key"]] == batch["caption"]
    assert batch["width"].tolist() == [8, 8, 8, 8]


def test_double_colon_joins_brace_expanded_sources(decode_key, write_shards_fn, tmp_path):
    write_shards_fn(tmp_path / "a", num_samples=6, per_shard=3)
    write_shards_fn(tmp_path / "b", num_samples=9, per_shard=3, start=100)
    urls = f"{tmp_path}/a/shard-{{000000..000001}}.tar::{tmp_path}/b/shard-{{000000..000002}}.tar"
    stream = ShardStream(urls, decode_key, batch_size=4)
    assert len(stream.sources) == 2 and len(stream.shard_urls) == 5
    expected = {f"sample{i:05d}" for i in [*range(6), *range(100, 109)]}
    assert sorted(flat(keys_of(stream.batches(0)))) == sorted(expected)


def test_folder_from_an_interrupted_writer_streams_its_finished_shards_with_a_warning(
    decode_key, make_sample_fn, tmp_path, caplog
):
    with pytest.raises(KeyboardInterrupt), ShardWriter(tmp_path, max_samples=3) as writer:
        for index in range(7):
            writer.write(make_sample_fn(index, with_image=False))
        raise KeyboardInterrupt
    stream = ShardStream(str(tmp_path), decode_key, batch_size=4)
    assert sorted(flat(keys_of(stream.batches(0)))) == [f"sample{i:05d}" for i in range(7)]
    assert "stopped early (KeyboardInterrupt" in caplog.text


def test_pipe_and_s3_urls_stream_through_shell_commands(decode_key, shard_dir, tmp_path):
    pipe_urls = "::".join(f"pipe:cat {shlex.quote(str(path))}" for path in sorted(shard_dir.glob("*.tar")))
    via_pipe = ShardStream(pipe_urls, decode_key, batch_size=8)
    assert sorted(flat(keys_of(via_pipe.batches(0)))) == sorted(ALL_KEYS)

    # A stand-in for `aws s3 cp`: maps s3://bucket/<name> to the local shard folder.
    fake_s3 = f"sh -c 'cat {shlex.quote(str(shard_dir))}/$(basename \"$0\")' {{url}}"
    via_s3 = ShardStream(f"s3://bucket/{PATTERN}", decode_key, batch_size=8, s3_command=fake_s3)
    assert sorted(flat(keys_of(via_s3.batches(0)))) == sorted(ALL_KEYS)


def test_compressed_shards_stream_and_a_cut_one_is_reported(decode_key, shard_dir, tmp_path):
    for path in sorted(shard_dir.glob("*.tar")):
        (tmp_path / (path.name + ".gz")).write_bytes(gzip.compress(path.read_bytes()))
    stream = ShardStream(str(tmp_path / "shard-{000000..000005}.tar.gz"), decode_key, batch_size=8)
    assert sorted(flat(keys_of(stream.batches(0)))) == sorted(ALL_KEYS)
    assert stream.report()["shards_failed"] == 0

    cut = tmp_path / "shard-000002.tar.gz"
    cut.write_bytes(cut.read_bytes()[:-40])
    keys = flat(keys_of(stream.batches(0)))
    assert len(keys) < 38 and stream.report()["failures_by_shard"] == {str(cut): 1}


def test_source_weights_set_sample_proportions_like_open_clip_upsampling(decode_key, write_shards_fn, tmp_path):
    write_shards_fn(tmp_path / "a", num_samples=4, per_shard=2, with_image=False)
    write_shards_fn(tmp_path / "b", num_samples=8, per_shard=2, start=100, with_image=False)
    urls = f"{tmp_path}/a::{tmp_path}/b"
    draws = 2000  # shard draws; each shard holds 2 samples
    # Weights as open_clip's factor string or as a list; source a has 2 shards, b has 4.
    for weights, expected_share_a in [("3::1", 3 * 2 / (3 * 2 + 1 * 4)), ([1.0, 1.0], 2 / 6)]:
        stream = ShardStream(
            urls,
            decode_key,
            batch_size=100,
            mode="resampled",
            samples_per_epoch=2 * draws,
            source_weights=weights,
            shuffle_buffer=1,
        )
        keys = flat(keys_of(stream.batches(0)))
        share_a = sum(int(key[-5:]) < 100 for key in keys) / len(keys)
        standard_error = math.sqrt(expected_share_a * (1 - expected_share_a) / draws)
        assert abs(share_a - expected_share_a) < 4 * standard_error, (weights, share_a)


def test_bad_source_options_are_refused(decode_key, shard_dir):
    with pytest.raises(FileNotFoundError, match="shard-000006.tar"):
        ShardStream(str(shard_dir / "shard-{000000..000009}.tar"), decode_key, 4)
    with pytest.raises(ValueError, match="need mode='resampled'"):
        ShardStream(f"{shard_dir}::{shard_dir}", decode_key, 4, source_weights=[2, 1])
    with pytest.raises(ValueError, match="1 source_weights for 2 sources"):
        ShardStream(
            f"{shard_dir}::{shard_dir}", decode_key, 4, mode="resampled", samples_per_epoch=8, source_weights=[1]
        )
    with pytest.raises(ValueError, match="samples_per_epoch"):
        ShardStream(str(shard_dir), decode_key, 4, mode="resampled")


# -- resampled mode, node and worker splits -----------------------------------------------------------


def test_resampled_mode_yields_virtual_epochs_of_samples_per_epoch(decode_key, shard_dir, monkeypatch):
    stream = ShardStream(
        str(shard_dir), decode_key, batch_size=8, mode="resampled", samples_per_epoch=100, shuffle_buffer=20
    )
    batches = keys_of(stream.batches(0))
    assert [len(batch) for batch in batches] == [8] * 12 and stream.batches_per_epoch() == 12
    assert set(flat(batches)) <= ALL_KEYS
    assert keys_of(stream.batches(0)) == batches and keys_of(stream.batches(1)) != batches

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert [len(batch) for batch in keys_of(stream.batches(0))] == [8] * 6


def test_node_split_is_disjoint_and_covering(decode_key, shard_dir, monkeypatch):
    per_rank = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        stream = ShardStream(str(shard_dir), decode_key, batch_size=4, seed=1)
        per_rank.append(flat(keys_of(stream.batches(2))))
    assert not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == sorted(ALL_KEYS)
    assert min(len(keys) for keys in per_rank) > 0


def test_worker_split_is_disjoint_covering_and_resumable(decode_key, shard_dir):
    stream = ShardStream(str(shard_dir), decode_key, batch_size=4, num_workers=2, seed=5)
    full = keys_of(stream.batches(0))
    assert sorted(flat(full)) == sorted(ALL_KEYS)  # no sample twice, none missing
    # Resuming near the end, after one worker has run out, is exact too.
    for start in (1, 4, len(full) - 2):
        assert keys_of(stream.batches(0, start)) == full[start:], start


# -- exact resume --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"filters": [{"field": "article_license", "one_of": ["CC BY", "CC0", "other"]}]},
        {"balance": {"field": "image_primary_label", "threshold": 8}},
        {"mode": "resampled", "samples_per_epoch": 60},
    ],
    ids=["plain", "filtered", "balanced", "resampled"],
)
def test_resume_mid_shard_equals_one_uninterrupted_epoch(decode_key, shard_dir, options):
    def make_stream():
        return ShardStream(str(shard_dir), decode_key, batch_size=5, shuffle_buffer=6, seed=11, **options)

    uninterrupted = keys_of(make_stream().batches(4))
    interrupted = []
    for batch in make_stream().batches(4):
        interrupted.append(list(batch["key"]))
        if len(interrupted) == 3:  # 15 samples: in the middle of the third 7-sample shard
            break
    resumed = keys_of(make_stream().batches(4, start_batch=3))

    assert interrupted + resumed == uninterrupted
    if options.get("mode") != "resampled":  # resampling draws shards with replacement
        assert len(set(flat(interrupted + resumed))) == len(flat(uninterrupted))  # no repeats
    assert keys_of(make_stream().batches(4, start_batch=len(uninterrupted))) == []


# -- filters and balancing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "keep"),
    [
        ({"field": "article_license", "equals": "CC0"}, lambda meta: meta["article_license"] == "CC0"),
        (
            {"field": "article_license", "one_of": ["CC BY", "CC0"]},
            lambda meta: meta["article_license"] in {"CC BY", "CC0"},
        ),
        (
            {"field": "image_primary_label", "any_of": ["clinical"]},
            lambda meta: "clinical" in meta["image_primary_label"],
        ),
        ({"field": "score", "min_value": 2.05}, lambda meta: meta["score"] >= 2.05),
        ({"field": "missing.field", "equals": 1}, lambda meta: False),
    ],
)
def test_metadata_filters_keep_exactly_the_matching_samples(decode_key, make_sample_fn, shard_dir, rule, keep):
    stream = ShardStream(str(shard_dir), decode_key, batch_size=6, filters=[rule])
    expected = {sample["__key__"] for sample in map(make_sample_fn, range(38)) if keep(sample["json"])}
    kept = flat(keys_of(stream.batches(0)))
    assert sorted(kept) == sorted(expected)
    assert stream.report()["filtered_out"] == 38 - len(expected)


def test_filters_combine_with_and_and_reject_bad_specs(decode_key, shard_dir):
    rules = [MetadataFilter("image_panel_type", equals="single"), {"field": "score", "max_value": 1.0}]
    stream = ShardStream(str(shard_dir), decode_key, batch_size=6, filters=rules)
    expected = {f"sample{i:05d}" for i in range(38) if i % 2 == 1 and i / 10 <= 1.0}
    assert set(flat(keys_of(stream.batches(0)))) == expected
    with pytest.raises(ValueError, match="exactly one"):
        MetadataFilter("score", min_value=1, max_value=2)
    with pytest.raises(ValueError, match="unknown metadata filter keys"):
        MetadataFilter.from_config({"field": "score", "greater": 1})


@pytest.fixture(scope="module")
def skewed_concepts(tmp_path_factory) -> tuple[Path, dict[str, list[str]]]:
    """Concept counts a=1800, b=900, c=150 (300 samples carry both a and b)."""
    folder = tmp_path_factory.mktemp("concepts")
    groups = {"a": 1500, "b": 600, "c": 150, "a+b": 300}
    keys: dict[str, list[str]] = {}
    with ShardWriter(folder, max_samples=500, concept_fields=["concept"]) as writer:
        index = 0
        for group, size in groups.items():
            for _ in range(size):
                key = f"s{index:05d}"
                writer.write({"__key__": key, "json": {"concept": group.split("+")}})
                keys.setdefault(group, []).append(key)
                index += 1
    return folder, keys


def test_concept_balancing_keeps_each_concept_with_metaclip_probability(decode_key, skewed_concepts):
    folder, keys = skewed_concepts
    threshold = 300
    stream = ShardStream(str(folder), decode_key, batch_size=256, balance=ConceptBalance("concept", threshold), seed=2)
    assert stream.concept_counts == {"a": 1800, "b": 900, "c": 150}
    kept = set(flat(keys_of(stream.batches(0))))

    p = {concept: min(1.0, threshold / count) for concept, count in stream.concept_counts.items()}
    expected_probability = {"a": p["a"], "b": p["b"], "c": p["c"], "a+b": 1 - (1 - p["a"]) * (1 - p["b"])}
    for group, probability in expected_probability.items():
        size = len(keys[group])
        observed = sum(key in kept for key in keys[group])
        sigma = math.sqrt(size * probability * (1 - probability))
        assert abs(observed - size * probability) <= max(4 * sigma, 0.5), (group, observed, size * probability)
    assert stream.report()["balanced_out"] == 2550 - len(kept)

    again = ShardStream(str(folder), decode_key, 256, balance={"field": "concept", "threshold": 300}, seed=2)
    assert set(flat(keys_of(again.batches(0)))) == kept
    assert set(flat(keys_of(again.batches(1)))) != kept


def test_balancing_needs_counts_it_can_find(decode_key, shard_dir):
    with pytest.raises(ValueError, match="no concept counts for 'image_panel_type'"):
        ShardStream(str(shard_dir), decode_key, 4, balance=ConceptBalance("image_panel_type", 5))


# -- bad data --------------------------------------------------------------------------------------------


def member_offset(tar_path: Path, member_name: str) -> int:
    """Byte offset of a member's header in a tar file."""
    with tarfile.open(tar_path) as archive:
        return archive.getmember(member_name).offset


@pytest.mark.parametrize("cut", ["at_member_boundary", "inside_member"])
def test_truncated_shard_over_http_and_corrupt_sample_are_skipped_counted_and_reported(
    decode_caption, http_server, make_sample_fn, tmp_path, cut
):
    folder = tmp_path / "served"
    with ShardWriter(folder, max_samples=10) as writer:
        for index in range(30):
            sample = make_sample_fn(index)
            if index == 23:
                sample["jpg"] = b"\xff\xd8 this is not a JPEG"
            writer.write(sample)
    truncated = folder / "shard-000001.tar"
    content = truncated.read_bytes()
    # Members are written in field order cls, jpg, json, txt: cutting before sample 15's "txt" leaves
    # sample 15 without its caption (tarfile reads such a cut archive as complete).
    cut_at = member_offset(truncated, "sample00015.txt") + (0 if cut == "at_member_boundary" else 700)
    truncated.write_bytes(content[:cut_at])

    with http_server(folder) as base_url:
        stream = ShardStream(f"{base_url}/shard-{{000000..000002}}.tar", decode_caption, batch_size=4, shuffle_buffer=5)
        keys = flat(keys_of(stream.batches(0)))
    report = stream.report()

    intact = {f"sample{i:05d}" for i in [*range(10), *range(20, 30)] if i != 23}
    assert sorted(keys) == sorted(intact | {f"sample{i:05d}" for i in range(10, 15)})
    assert report["shards_failed"] == 1 and report["samples_failed"] == 1
    assert report["failures_by_shard"] == {f"{base_url}/shard-000001.tar": 1, f"{base_url}/shard-000002.tar": 1}
    shard_reason = "shard: TruncatedShardError" if cut == "at_member_boundary" else "shard: ReadError"
    assert report["failures_by_reason"] == {shard_reason: 1, "decode: UnidentifiedImageError": 1}
    assert report["samples_decoded"] == len(keys)
    assert any("sample00023" in example for example in report["examples"])


def test_consecutive_failures_stop_the_stream_naming_the_shard(decode_caption, make_sample_fn, tmp_path):
    with ShardWriter(tmp_path, max_samples=10) as writer:
        for index in range(10):
            writer.write({**make_sample_fn(index), "jpg": b"corrupt"})
    stream = ShardStream(str(tmp_path), decode_caption, batch_size=4, max_consecutive_failures=3)
    with pytest.raises(TooManyFailuresError, match=r"3 consecutive failures.*shard-000000\.tar"):
        list(stream.batches(0))


def test_failures_below_the_bound_do_not_stop_the_stream(decode_caption, make_sample_fn, tmp_path):
    with ShardWriter(tmp_path, max_samples=10) as writer:
        for index in range(10):
            sample = make_sample_fn(index)
            writer.write({**sample, "jpg": b"corrupt"} if index % 2 else sample)
    (tmp_path / "shard-000099.tar").write_bytes(b"this is not a tar file at all" * 40)
    urls = f"{tmp_path}/shard-000000.tar::{tmp_path}/shard-000099.tar"
    stream = ShardStream(urls, decode_caption, batch_size=4, shuffle_buffer=1, max_consecutive_failures=2)
    keys = flat(keys_of(stream.batches(0)))
    assert sorted(keys) == [f"sample{i:05d}" for i in range(0, 10, 2)]
    report = stream.report()
    assert report["samples_failed"] == 5 and report["shards_failed"] == 1
    assert report["failures_by_shard"][f"{tmp_path}/shard-000099.tar"] == 1


def test_report_sums_counts_from_worker_processes(decode_caption, make_sample_fn, tmp_path):
    with ShardWriter(tmp_path, max_samples=5) as writer:
        for index in range(20):
            sample = make_sample_fn(index)
            writer.write({**sample, "jpg": b"corrupt"} if index % 7 == 0 else sample)
    stream = ShardStream(str(tmp_path), decode_caption, batch_size=3, num_workers=2)
    keys = flat(keys_of(stream.batches(0)))
    report = stream.report()
    assert len(keys) == 17 and report["samples_decoded"] == 17
    assert report["failures_by_reason"] == {"decode: UnidentifiedImageError": 3}
    assert report["shards_opened"] == 4
    assert collections.Counter(report["failures_by_shard"]).total() == 3
