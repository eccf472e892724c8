"""Stream batches from webdataset shards: local, http(s), s3 or any ``pipe:`` command.

:class:`ShardStream` turns shard URLs into batches for the trainer. It builds on webdataset 1.0.2
(``SimpleShardList`` for brace expansion and the seeded shard order, ``gopen`` for every URL scheme,
``tar_file_expander`` + ``group_by_keys`` for tar parsing, ``shuffle`` and ``batched`` stages in a
``DataPipeline``, ``pytorch_worker_info`` for the node's rank) and adds what the trainer and the
domains need on top. Shards are split between nodes and workers by position in the shared seeded
order (what ``split_by_node``/``split_by_worker`` do), but with the worker index passed in
explicitly: exact resume with several workers needs to say which worker plays which share.

* **Sources and weights.** ``"a/shard-{0000..0099}.tar::https://host/b/{000..009}.tar"`` joins
  sources with ``::``; ``source_weights`` are open_clip's upsampling factors (resampled mode): every
  shard of source *i* is drawn with probability proportional to ``weight_i``, so source *i*
  contributes ``w_i·n_i / Σ_j w_j·n_j`` of the samples (``n`` = shard counts).
* **Two modes.** ``"epoch"``: every shard once per epoch, shard order and sample shuffle seeded by
  ``(seed, epoch)``; ``"resampled"``: shards drawn with replacement, virtual epochs of
  ``samples_per_epoch`` samples (as open_clip's ``--dataset-resampled --train-num-samples``).
* **Sample-exact resume.** ``batches(epoch, start_batch)`` yields exactly the batches an
  uninterrupted pass would have yielded from ``start_batch`` on: the raw sample order is a pure
  function of ``(seed, epoch, rank, worker)``, a batch is a fixed window of ``batch_size`` raw
  samples, and resuming skips whole windows without decoding them.
* **Metadata filters and concept balancing** on the per-sample JSON (:class:`MetadataFilter`,
  :class:`ConceptBalance`, the latter as in MetaCLIP with counts from the shard manifest).
* **Bad data.** A sample whose ``decode_sample`` raises, or a shard that cannot be opened or read
  to its end, is skipped and counted per reason and per shard (``report()``); after
  ``max_consecutive_failures`` failures in a row the stream raises :class:`TooManyFailuresError`
  naming the shard.

* **Any world size.** In epoch mode shards are split between nodes and workers when there are at least
  as many shards as nodes × workers; with fewer (a small data set, a demo with one shard) every node and
  worker reads all shards in the same seeded order and the *samples* are split instead: the shuffled
  stream is cut into groups of ``world_size`` samples and node ``r`` takes the ``r``-th of each group
  (of each complete group with ``drop_last``, so that nodes get equal shares), then worker ``w`` takes windows ``w, w + n, …``. Then the global batch ``k`` (node batches of
  ``batch_size``) holds exactly the samples of batch ``k`` of one process with ``batch_size ×
  world_size``: a run's data do not depend on the world size. ``node_split`` forces either way, or
  ``"none"`` (every node reads everything: evaluation on one rank, loading a data set into memory).
  Code running inside :func:`shared.distributed.whole_data_view` (preparation, evaluation on rank 0)
  also reads everything.

When shards are split, the nodes' shares differ by up to a shard, so nodes may see different numbers of
batches: under DDP stop by ``max_steps`` or use resampled mode (as open_clip does for multi-node).

A batch whose samples all fail to decode is dropped (counted as ``empty_batches``); resume positions
count yielded batches, so a resume after such a batch is one batch late. With the default bound
(100 consecutive failures) this can only happen when ``batch_size`` is below 100.

URL schemes: local paths (or a shard folder: its manifest's shards, else its ``*.tar`` files),
``file://``, ``http(s)://`` (streamed through ``curl``), ``s3://`` (streamed through the AWS CLI,
``aws s3 cp <url> -``; change ``s3_command`` for another tool, e.g. ``"s5cmd cat {url}"``), and
``pipe:<shell command>`` writing the tar to stdout (e.g. ``pipe:curl -s -H 'Authorization: Bearer
…' https://…/shard.tar`` for gated hubs). ``pipe:`` runs a shell: use it only with trusted URLs.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import shlex
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, default_collate

from shared.distributed import reads_whole_data
from shared.shards import MANIFEST_NAME, S3_READ_COMMAND, ManifestError, read_manifest

logger = logging.getLogger(__name__)

DecodeSample = Callable[[dict[str, Any]], dict[str, Any]]
# Failure messages kept in the report, one per (reason, shard) pair, up to this many.
MAX_FAILURE_EXAMPLES = 20
# Warnings logged per stream pass before going quiet (the report still counts everything).
MAX_LOGGED_FAILURES = 10


class TooManyFailuresError(RuntimeError):
    """Raised after ``max_consecutive_failures`` samples or shards failed in a row."""


# -- metadata filters and concept balancing ----------------------------------------------------------


_MISSING = object()


def _field_value(metadata: Mapping[str, Any], field: str) -> Any:
    """The value at a dotted path in a JSON object, or ``_MISSING`` (absent or null)."""
    value: Any = metadata
    for part in field.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return _MISSING if value is None else value


def _hashable(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


@dataclasses.dataclass(frozen=True)
class MetadataFilter:
    """Keeps a sample when one field of its JSON metadata satisfies one condition.

    Set exactly one condition. A sample without the field, or with a value of the wrong type, is
    filtered out. In YAML: ``filters: [{field: article_license, one_of: [CC BY, CC0]}]``.

    Attributes:
        field: Dotted path into the per-sample JSON, e.g. ``"article_license"`` or ``"meta.snr"``.
        equals: Keep when the (scalar) field equals this value.
        one_of: Keep when the (scalar) field is one of these values.
        any_of: Keep when the list field (a scalar counts as a one-element list) contains at least
            one of these values, e.g. concept labels.
        min_value: Keep when the numeric field is at least this (same unit as the field).
        max_value: Keep when the numeric field is at most this.
    """

    field: str
    equals: Any = None
    one_of: Sequence[Any] | None = None
    any_of: Sequence[Any] | None = None
    min_value: float | None = None
    max_value: float | None = None

    def __post_init__(self) -> None:
        conditions = [self.equals, self.one_of, self.any_of, self.min_value, self.max_value]
        if sum(condition is not None for condition in conditions) != 1:
            raise ValueError(
                f"MetadataFilter on {self.field!r} needs exactly one of equals, one_of, any_of, min_value, max_value"
            )

    @classmethod
    def from_config(cls, spec: MetadataFilter | Mapping[str, Any]) -> MetadataFilter:
        """Builds a filter from a dict (as read from YAML), or returns a filter unchanged."""
        if isinstance(spec, MetadataFilter):
            return spec
        unknown = set(spec) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown metadata filter keys {sorted(unknown)} in {dict(spec)}")
        return cls(**spec)

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        """Whether a sample with this metadata is kept."""
        value = _field_value(metadata, self.field)
        if value is _MISSING:
            return False
        if self.any_of is not None:
            elements = value if isinstance(value, list) else [value]
            wanted = set(self.any_of)
            return any(_hashable(element) and element in wanted for element in elements)
        if isinstance(value, list | dict):
            return False
        if self.equals is not None:
            return value == self.equals
        if self.one_of is not None:
            return value in list(self.one_of)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.min_value is not None:
            return value >= self.min_value
        return value <= self.max_value  # type: ignore[operator]


@dataclasses.dataclass(frozen=True)
class ConceptBalance:
    """MetaCLIP-style concept balancing: caps how often each concept is seen per epoch.

    A sample whose concept ``c`` occurs ``count(c)`` times in the data is kept with probability
    ``min(1, threshold / count(c))``; with several concepts (a list field), it is kept when any of its
    concepts keeps it, i.e. with probability ``1 - Π_c (1 - min(1, t / count(c)))``, as MetaCLIP's
    ``balance_sampling``. Decisions are seeded by ``(seed, epoch, sample key, concept)``: the same
    in every run and on resume, a different subset each epoch.

    Attributes:
        field: Dotted path of the concept field in the per-sample JSON (scalar or list).
        threshold: The per-concept cap ``t`` (MetaCLIP's ``t``, e.g. 20,000 for 400M pairs).
        counts: Concept → number of samples. None reads ``manifest["concept_counts"][field]`` from
            each source's ``manifest.json`` (summed over sources).
        keep_unlabelled: Keep samples that have no concept (otherwise they are dropped).
    """

    field: str
    threshold: float
    counts: Mapping[str, int] | None = None
    keep_unlabelled: bool = True

    def __post_init__(self) -> None:
        if self.threshold <= 0:
            raise ValueError(f"ConceptBalance threshold must be positive, got {self.threshold}")

    @classmethod
    def from_config(cls, spec: ConceptBalance | Mapping[str, Any]) -> ConceptBalance:
        """Builds a balance rule from a dict (as read from YAML), or returns it unchanged."""
        return spec if isinstance(spec, ConceptBalance) else cls(**spec)

    def keep_probability(self, concept: str, counts: Mapping[str, int]) -> float:
        """``min(1, threshold / count(concept))``; a concept absent from the counts is always kept."""
        count = counts.get(concept, 0)
        return 1.0 if count <= 0 else min(1.0, self.threshold / count)


def _unit_uniform(*parts: object) -> float:
    """A uniform number in [0, 1) that depends only on ``parts`` (stable across processes)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def _stage_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(part) & 0xFFFFFFFF for part in parts]).generate_state(1)[0])


# -- failure accounting ----------------------------------------------------------------------------


@dataclasses.dataclass
class _Counters:
    """What one pass over the data saw; workers send these to the main process with each batch."""

    samples_decoded: int = 0
    samples_failed: int = 0
    shards_opened: int = 0
    shards_failed: int = 0
    filtered_out: int = 0
    balanced_out: int = 0
    batches: int = 0
    empty_batches: int = 0
    failures_by_reason: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    failures_by_shard: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    examples: list[str] = dataclasses.field(default_factory=list)

    def merge(self, other: Mapping[str, Any]) -> None:
        for name in (
            "samples_decoded",
            "samples_failed",
            "shards_opened",
            "shards_failed",
            "filtered_out",
            "balanced_out",
            "batches",
            "empty_batches",
        ):
            setattr(self, name, getattr(self, name) + other[name])
        self.failures_by_reason.update(other["failures_by_reason"])
        self.failures_by_shard.update(other["failures_by_shard"])
        room = MAX_FAILURE_EXAMPLES - len(self.examples)
        self.examples.extend(other["examples"][: max(room, 0)])

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["failures_by_reason"] = dict(self.failures_by_reason)
        data["failures_by_shard"] = dict(self.failures_by_shard)
        return data


class _FailureTracker:
    """Counts failures, logs the first few and enforces the consecutive-failure bound."""

    def __init__(self, max_consecutive: int) -> None:
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.logged = 0
        self.counters = _Counters()

    def success(self) -> None:
        self.consecutive = 0

    def failure(self, kind: str, shard: str, error: BaseException, key: str | None = None) -> None:
        reason = f"{kind}: {type(error).__name__}"
        counters = self.counters
        counters.failures_by_reason[reason] += 1
        counters.failures_by_shard[shard] += 1
        if kind == "shard":
            counters.shards_failed += 1
        else:
            counters.samples_failed += 1
        where = f"{shard}" + (f" sample {key!r}" if key else "")
        message = f"{reason} in {where}: {str(error)[:300]}"
        if len(counters.examples) < MAX_FAILURE_EXAMPLES:
            counters.examples.append(message)
        if self.logged < MAX_LOGGED_FAILURES:
            self.logged += 1
            logger.warning("skipped %s", message)
        self.consecutive += 1
        if self.consecutive >= self.max_consecutive:
            raise TooManyFailuresError(
                f"stopping after {self.consecutive} consecutive failures (max_consecutive_failures="
                f"{self.max_consecutive}); the last was {message}"
            )

    def take(self) -> dict[str, Any]:
        """The counts since the last call (they travel with a batch), then starts afresh."""
        snapshot = self.counters.as_dict()
        self.counters = _Counters()
        return snapshot


class TruncatedShardError(OSError):
    """A shard ended without the tar end-of-archive marker (cut short in storage or in transit)."""


class _TarEndCheckingReader:
    """Wraps a shard's byte stream; after parsing, checks the tar ended with its two zero blocks."""

    _BLOCK_BYTES = 512
    _END_MARKER_BYTES = 2 * _BLOCK_BYTES

    # gzip, bzip2, xz: their decompressors detect a cut stream themselves (tarfile raises ReadError).
    _COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ")

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._head = b""
        self._tail = b""
        self.num_bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if len(self._head) < 8:
            self._head = (self._head + data)[:8]
        self.num_bytes += len(data)
        if len(data) >= self._END_MARKER_BYTES:
            self._tail = data[-self._END_MARKER_BYTES :]
        else:
            self._tail = (self._tail + data)[-self._END_MARKER_BYTES :]
        return data

    def check_archive_end(self, url: str) -> None:
        """Reads what tarfile left unread (record padding) and checks the archive's end.

        Raises:
            TruncatedShardError: The size is not whole 512-byte blocks or the end marker is missing.
        """
        while self.read(1 << 16):
            pass
        if self._head.startswith(self._COMPRESSED_MAGIC):
            return
        whole_blocks = self.num_bytes % self._BLOCK_BYTES == 0
        if not whole_blocks or self._tail != bytes(self._END_MARKER_BYTES):
            raise TruncatedShardError(
                f"{url}: shard ends after {self.num_bytes} bytes without the tar end-of-archive marker "
                f"(truncated?); its last sample was dropped"
            )

    def close_quietly(self) -> None:
        try:
            self._stream.close()
        except Exception as error:  # noqa: BLE001 - the shard's outcome is already recorded
            logger.debug("closing shard stream failed: %s", error)


# -- the stream ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Placement:
    """Where one pipeline runs: node ``rank`` of ``world_size``, DataLoader ``worker`` of ``num_workers``.

    ``by_sample``: nodes and workers read every shard and split the samples (too few shards to split).
    """

    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1
    by_sample: bool = False


class ShardStream:
    """Batches decoded from webdataset shards, reproducible per ``(seed, epoch)`` and resumable.

    Args:
        urls: Shard sources: one string with sources joined by ``::``, or a list of sources. Each
            source is a brace pattern (``dir/shard-{000000..000009}.tar``), a URL pattern
            (``http(s)://``, ``s3://``, ``file://``, ``pipe:``) or a local shard folder.
        decode_sample: ``fn(sample) -> dict`` turning a raw sample (``{"__key__": str, "__url__":
            str, "<field>": bytes, ...}``) into tensors/numbers/strings; an exception marks the
            sample corrupt (skipped and counted). Must be picklable when ``num_workers > 0``.
        batch_size: Samples per batch (per node).
        mode: ``"epoch"`` (each shard once per epoch) or ``"resampled"`` (shards drawn with
            replacement; needs ``samples_per_epoch``).
        samples_per_epoch: Resampled mode: samples in one virtual epoch over all nodes (open_clip's
            ``--train-num-samples``); each node yields ``samples_per_epoch // world_size //
            batch_size`` batches.
        seed: Seed of the shard order, the sample shuffle, resampling and balancing.
        shuffle_buffer: Samples held by the shuffle buffer (1 or less: no sample shuffle).
        filters: :class:`MetadataFilter` objects or their dicts; a sample is kept if all match.
        balance: A :class:`ConceptBalance` (or its dict), or None.
        max_consecutive_failures: Failures in a row (corrupt samples or unreadable shards) after
            which the stream raises :class:`TooManyFailuresError`.
        source_weights: One upsampling factor per source (resampled mode only), as a list or as
            open_clip's ``--train-data-upsampling-factors`` string (``"3::1"``).
        num_workers: DataLoader worker processes (0: decode in the calling process). On 2 CPU cores
            0 is fastest; use several on GPU machines. Shards are split between workers.
        drop_last: Drop the last, smaller batch of an epoch (epoch mode).
        metadata_field: The sample field holding the per-sample JSON (for filters and balancing).
        s3_command: Shell command streaming an ``s3://`` object to stdout; ``{url}`` is replaced by
            the quoted URL.
        node_split: How nodes (ranks) and workers share an epoch: ``"auto"`` (by shard when there
            are at least nodes × workers shards, else by sample), ``"shard"``, ``"sample"``, or
            ``"none"`` (each node reads every shard; for evaluation or loading all data on a rank).
            Resampled mode always draws shards per node and worker.

    Raises:
        ValueError: Inconsistent options (unknown mode, weights in epoch mode, …).
        FileNotFoundError: A local shard named by the pattern does not exist.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        decode_sample: DecodeSample,
        batch_size: int,
        mode: Literal["epoch", "resampled"] = "epoch",
        samples_per_epoch: int | None = None,
        seed: int = 0,
        shuffle_buffer: int = 1000,
        filters: Sequence[MetadataFilter | Mapping[str, Any]] | None = None,
        balance: ConceptBalance | Mapping[str, Any] | None = None,
        max_consecutive_failures: int = 100,
        source_weights: str | Sequence[float] | None = None,
        num_workers: int = 0,
        drop_last: bool = False,
        metadata_field: str = "json",
        s3_command: str = S3_READ_COMMAND,
        node_split: Literal["auto", "shard", "sample", "none"] = "auto",
    ) -> None:
        if mode not in ("epoch", "resampled"):
            raise ValueError(f"mode must be 'epoch' or 'resampled', got {mode!r}")
        if node_split not in ("auto", "shard", "sample", "none"):
            raise ValueError(f"node_split must be 'auto', 'shard', 'sample' or 'none', got {node_split!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if mode == "resampled" and (samples_per_epoch is None or samples_per_epoch < 1):
            raise ValueError("mode='resampled' needs samples_per_epoch (the virtual epoch length)")
        if max_consecutive_failures < 1:
            raise ValueError(f"max_consecutive_failures must be at least 1, got {max_consecutive_failures}")
        if "{url}" not in s3_command:
            raise ValueError(f"s3_command must contain '{{url}}', got {s3_command!r}")
        self.sources = self._expand_sources(urls)
        if isinstance(source_weights, str):
            try:
                source_weights = [float(weight) for weight in source_weights.split("::")]
            except ValueError:
                raise ValueError(f"source_weights {source_weights!r}: expected numbers joined by '::'") from None
        if source_weights is not None:
            if len(source_weights) != len(self.sources):
                raise ValueError(
                    f"{len(source_weights)} source_weights for {len(self.sources)} sources "
                    f"({' :: '.join(source[0] for source in self.sources)})"
                )
            if any(weight <= 0 for weight in source_weights):
                raise ValueError(f"source_weights must be positive, got {list(source_weights)}")
            if mode == "epoch" and any(weight != 1 for weight in source_weights):
                raise ValueError("source_weights other than 1 need mode='resampled' (as in open_clip)")
        self.source_weights = [float(weight) for weight in source_weights or [1.0] * len(self.sources)]
        self.decode_sample = decode_sample
        self.batch_size = batch_size
        self.mode = mode
        self.samples_per_epoch = samples_per_epoch
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer
        self.filters = [MetadataFilter.from_config(spec) for spec in filters or []]
        self.balance = None if balance is None else ConceptBalance.from_config(balance)
        self.max_consecutive_failures = max_consecutive_failures
        self.num_workers = num_workers
        self.drop_last = drop_last
        self.metadata_field = metadata_field
        self.s3_command = s3_command
        self.node_split = node_split
        self.epoch = 0
        self._concept_counts = self._load_concept_counts(self.balance) if self.balance is not None else {}
        self._report = _Counters()

    # -- public API --------------------------------------------------------------------------------

    @property
    def shard_urls(self) -> list[str]:
        """All shard URLs, in source order."""
        return [url for source in self.sources for url in source]

    @property
    def concept_counts(self) -> dict[str, int]:
        """The concept counts balancing uses (empty without ``balance``)."""
        return dict(self._concept_counts)

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch that ``iter(stream)`` yields."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.batches(self.epoch, 0)

    def batches_per_epoch(self) -> int | None:
        """Batches per epoch on this node in resampled mode; None in epoch mode (depends on the data)."""
        if self.mode != "resampled":
            return None
        world_size = self._node_placement().world_size
        return (self.samples_per_epoch or 0) // world_size // self.batch_size

    def batches(self, epoch: int, start_batch: int = 0) -> Iterator[dict[str, Any]]:
        """The batches of one epoch from batch ``start_batch`` on (the trainer's ``make_batches``).

        Resuming at ``start_batch = k`` yields exactly what an uninterrupted pass yields after its
        first ``k`` batches (same samples, same order), skipping the first ``k`` windows of raw
        samples without decoding them.

        Args:
            epoch: Epoch number (seeds the shard order, shuffles, resampling and balancing).
            start_batch: Number of this epoch's batches already consumed.

        Yields:
            Dicts collated by ``torch.utils.data.default_collate`` from ``decode_sample`` outputs
            (tensors stacked, strings as lists).

        Raises:
            TooManyFailuresError: ``max_consecutive_failures`` failures in a row.
        """
        if start_batch < 0:
            raise ValueError(f"start_batch must be >= 0, got {start_batch}")
        node = self._node_placement()
        workers = max(self.num_workers, 1)
        if node.by_sample and self.node_split == "auto" and epoch == 0 and start_batch == 0:
            logger.info(
                "%d shard(s) for %d node(s) x %d worker(s): every node reads all shards and takes every %d-th sample",
                len(self.shard_urls),
                node.world_size,
                workers,
                node.world_size,
            )
        limits = self._worker_limits(node, workers)
        skips, first_worker = self._worker_skips(epoch, start_batch, node, limits)
        pass_spec = _PassSpec(self, epoch, node, skips, limits, first_worker)
        if self.num_workers == 0:
            items: Iterable[tuple[Any, dict[str, Any]]] = pass_spec.run(worker=0, num_workers=1)
        else:
            items = DataLoader(
                pass_spec,
                batch_size=None,
                num_workers=self.num_workers,
                persistent_workers=False,
            )
        for batch, counts in items:
            self._report.merge(counts)
            if batch is not None:
                yield batch

    def report(self) -> dict[str, Any]:
        """What the stream has seen so far (all passes, all workers of this process).

        Returns:
            ``samples_decoded``, ``samples_failed``, ``shards_opened``, ``shards_failed``,
            ``filtered_out``, ``balanced_out``, ``batches``, ``empty_batches``, ``failures_by_reason``
            (e.g. ``{"decode: OSError": 3, "shard: ReadError": 1}``), ``failures_by_shard`` (URL →
            failures) and ``examples`` (the first failure messages).
        """
        return self._report.as_dict()

    # -- set-up --------------------------------------------------------------------------------------

    def _expand_sources(self, urls: str | Sequence[str]) -> list[list[str]]:
        patterns = urls.split("::") if isinstance(urls, str) else list(urls)
        if not patterns or any(not pattern.strip() for pattern in patterns):
            raise ValueError(f"empty shard source in {urls!r}")
        sources = []
        for pattern in patterns:
            pattern = pattern.strip()
            local_dir = Path(pattern)
            if "://" not in pattern and not pattern.startswith("pipe:") and local_dir.is_dir():
                shards = self._shards_in_folder(local_dir)
            else:
                shards = wds.SimpleShardList(pattern).urls
            for shard in shards:
                if "://" not in shard and not shard.startswith("pipe:") and not Path(shard).is_file():
                    raise FileNotFoundError(f"shard {shard} (from source {pattern!r}) does not exist")
            sources.append(shards)
        return sources

    @staticmethod
    def _shards_in_folder(folder: Path) -> list[str]:
        if (folder / MANIFEST_NAME).is_file():
            manifest = read_manifest(folder)
            shards = [str(folder / shard["name"]) for shard in manifest["shards"]]
            if not manifest.get("complete", True):
                logger.warning(
                    "%s: the shard writer stopped early (%s); streaming the %d shards it finished",
                    folder / MANIFEST_NAME,
                    manifest.get("error"),
                    len(shards),
                )
        else:
            shards = sorted(str(path) for path in folder.glob("*.tar"))
        if not shards:
            raise FileNotFoundError(f"{folder}: no shards (no {MANIFEST_NAME} listing shards, no *.tar files)")
        return shards

    def _load_concept_counts(self, balance: ConceptBalance) -> dict[str, int]:
        if balance.counts is not None:
            return {str(concept): int(count) for concept, count in balance.counts.items()}
        totals: collections.Counter[str] = collections.Counter()
        for source in self.sources:
            first = source[0]
            if first.startswith("pipe:"):
                raise ValueError(
                    f"cannot locate the manifest of pipe: source {first!r}; pass ConceptBalance(counts=...)"
                )
            folder = first.rsplit("/", 1)[0] if "/" in first else "."
            try:
                manifest = read_manifest(folder, s3_command=self.s3_command)
            except ManifestError as error:
                raise ManifestError(f"concept balancing needs concept counts: {error}") from None
            field_counts = manifest.get("concept_counts", {}).get(balance.field)
            if field_counts is None:
                raise ManifestError(
                    f"{folder}/{MANIFEST_NAME} has no concept counts for {balance.field!r} "
                    f"(it has {sorted(manifest.get('concept_counts', {}))}); write the shards with "
                    f"ShardWriter(concept_fields=[{balance.field!r}]) or pass counts"
                )
            totals.update({str(concept): int(count) for concept, count in field_counts.items()})
        return dict(totals)

    def _node_placement(self) -> _Placement:
        """This node's place in the job, and whether shards or samples are split (see ``node_split``)."""
        if self.node_split == "none" or reads_whole_data():
            return _Placement()
        rank, world_size, _, _ = wds.utils.pytorch_worker_info()
        too_few_shards = len(self.shard_urls) < world_size * max(self.num_workers, 1)
        by_sample = self.mode == "epoch" and (
            self.node_split == "sample" or (self.node_split == "auto" and too_few_shards)
        )
        return _Placement(rank=rank, world_size=world_size, by_sample=by_sample)

    # -- resume arithmetic -----------------------------------------------------------------------------

    def _worker_limits(self, node: _Placement, workers: int) -> list[int | None]:
        """Batches each worker yields per epoch: unbounded in epoch mode, a share in resampled mode."""
        if self.mode == "epoch":
            return [None] * workers
        node_batches = (self.samples_per_epoch or 0) // node.world_size // self.batch_size
        return [len(range(worker, node_batches, workers)) for worker in range(workers)]

    def _worker_skips(
        self, epoch: int, start_batch: int, node: _Placement, limits: list[int | None]
    ) -> tuple[list[int], int]:
        """Windows each worker skips, and which worker goes first, to resume at ``start_batch``.

        A DataLoader takes batches from its workers in turn, passing over finished workers, so the
        merged order is windows sorted by (index within worker, worker). Resuming at the window at
        ``(i0, w0)`` in that order: workers ``w >= w0`` skip ``i0`` windows, workers ``w < w0`` skip
        ``i0 + 1``, and DataLoader worker ``j`` plays worker ``(w0 + j) % n``. Window counts come from
        the limits in resampled mode and, in epoch mode, from a raw pass over each worker's shards
        (no decoding; only when resuming with 2+ workers).

        Returns:
            ``(skips per logical worker, w0)``.
        """
        workers = len(limits)
        if start_batch == 0:
            return [0] * workers, 0
        if workers == 1:
            return [start_batch], 0
        if self.mode == "resampled":
            lengths = [limit or 0 for limit in limits]
        else:
            probe = _PassSpec(self, epoch, node, [0] * workers, limits)
            lengths = [probe.count_windows(worker, workers) for worker in range(workers)]
        position = 0
        for index in range(max(lengths)):
            for worker in range(workers):
                if index >= lengths[worker]:
                    continue
                if position == start_batch:
                    skips = [min(index + (w < worker), lengths[w]) for w in range(workers)]
                    return skips, worker
                position += 1
        return lengths, 0


def _nth_of_each_group(samples: Iterable[Any], group: int, index: int, complete_only: bool) -> Iterator[Any]:
    """The ``index``-th sample of each group of ``group`` consecutive samples.

    With ``complete_only`` (``drop_last``, training) an incomplete last group is dropped: every node gets the
    same number of samples, so the nodes' batches have equal sizes and the contrastive gather lines up.
    Without it every sample goes to exactly one node (a single pass for evaluation or embedding).
    """
    iterator = iter(samples)
    while True:
        chunk = list(islice(iterator, group))
        if len(chunk) < group and (complete_only or index >= len(chunk)):
            return
        yield chunk[index]
        if len(chunk) < group:
            return


class _PassSpec(IterableDataset):
    """One epoch's pipeline for every worker of one node; picklable into DataLoader workers."""

    def __init__(
        self,
        stream: ShardStream,
        epoch: int,
        node: _Placement,
        skips: list[int],
        limits: list[int | None],
        first_worker: int = 0,
    ) -> None:
        super().__init__()
        self.stream = stream
        self.epoch = epoch
        self.node = node
        self.skips = skips
        self.limits = limits
        self.first_worker = first_worker

    def __iter__(self) -> Iterator[tuple[Any, dict[str, Any]]]:
        info = torch.utils.data.get_worker_info()
        if info is None:
            return self.run(0, 1)
        # DataLoader worker j plays logical worker (first_worker + j): see ShardStream._worker_skips.
        return self.run((self.first_worker + info.id) % info.num_workers, info.num_workers)

    # -- stages ---------------------------------------------------------------------------------------

    def _placement(self, worker: int, num_workers: int) -> _Placement:
        return dataclasses.replace(self.node, worker=worker, num_workers=num_workers)

    def _shard_order(self, where: _Placement) -> Iterator[dict[str, str]]:
        stream = self.stream
        if stream.mode == "epoch":
            # Same shard order on every node and worker (seeded by seed and epoch only), then split.
            shard_list = wds.SimpleShardList(stream.shard_urls, seed=_stage_seed(stream.seed, self.epoch, 1))
            if where.by_sample:  # every node and worker reads all shards; _windows splits the samples
                yield from shard_list
                return
            mine = islice(iter(shard_list), where.rank, None, where.world_size)
            yield from islice(mine, where.worker, None, where.num_workers)
            return
        urls = stream.shard_urls
        weights = [w for source, w in zip(stream.sources, stream.source_weights) for _ in source]
        probabilities = np.asarray(weights) / np.sum(weights)
        rng = np.random.default_rng(_stage_seed(stream.seed, self.epoch, where.rank, where.worker, 2))
        while True:
            yield {"url": urls[rng.choice(len(urls), p=probabilities)]}

    def _open_url(self, url: str) -> str:
        if url.startswith("s3://"):
            return "pipe:" + self.stream.s3_command.format(url=shlex.quote(url))
        return url

    def _read_shards(self, shards: Iterable[dict[str, str]], tracker: _FailureTracker) -> Iterator[dict[str, Any]]:
        """Samples of each shard; a shard that fails to open, to parse or to end properly is counted.

        The last sample of a shard is held back until the shard has ended with the tar end-of-archive
        marker: Python's tarfile reads an archive cut at a member boundary as complete, and would
        hand on a sample missing its last fields.
        """
        for shard in shards:
            url = shard["url"]
            tracker.counters.shards_opened += 1
            reader: _TarEndCheckingReader | None = None
            held_back = None
            failure: Exception | None = None
            try:
                reader = _TarEndCheckingReader(wds.gopen(self._open_url(url)))
                files = wds.tariterators.tar_file_expander([{"url": url, "stream": reader}], eof_value=None)
                for sample in wds.tariterators.group_by_keys(files):
                    if held_back is not None:
                        yield held_back
                    held_back = sample
                reader.check_archive_end(url)
            except Exception as error:  # noqa: BLE001 - any read error makes the shard's rest unusable
                failure = error
            finally:
                if reader is not None:
                    reader.close_quietly()
            # After a parse error the held-back sample is complete (the error came while reading the
            # next one); after a missing end marker it may lack fields.
            if held_back is not None and not isinstance(failure, TruncatedShardError):
                yield held_back
            if failure is not None:
                tracker.failure("shard", url, failure)

    def _select(self, samples: Iterable[dict[str, Any]], tracker: _FailureTracker) -> Iterator[dict[str, Any]]:
        stream = self.stream
        if not stream.filters and stream.balance is None:
            yield from samples
            return
        for sample in samples:
            raw = sample.get(stream.metadata_field)
            try:
                metadata = json.loads(raw) if raw is not None else {}
                if not isinstance(metadata, Mapping):
                    raise ValueError(f"{stream.metadata_field} is a {type(metadata).__name__}, not an object")
            except ValueError as error:
                tracker.failure("metadata", sample["__url__"], error, sample.get("__key__"))
                continue
            if not all(rule.matches(metadata) for rule in stream.filters):
                tracker.counters.filtered_out += 1
                continue
            if stream.balance is not None and not self._balanced_keep(sample["__key__"], metadata):
                tracker.counters.balanced_out += 1
                continue
            yield sample

    def _balanced_keep(self, key: str, metadata: Mapping[str, Any]) -> bool:
        balance = self.stream.balance
        if balance is None:
            return True
        value = _field_value(metadata, balance.field)
        concepts = (
            [] if value is _MISSING else [c for c in (value if isinstance(value, list) else [value]) if _hashable(c)]
        )
        if not concepts:
            return balance.keep_unlabelled
        counts = self.stream._concept_counts
        seed = self.stream.seed
        return any(
            _unit_uniform(seed, self.epoch, key, str(concept)) < balance.keep_probability(str(concept), counts)
            for concept in concepts
        )

    def _windows(self, where: _Placement, tracker: _FailureTracker) -> Iterator[list[dict[str, Any]]]:
        """Fixed windows of ``batch_size`` raw samples: the unit of batching and of resuming."""
        stream = self.stream
        stages: list[Any] = [
            lambda: self._shard_order(where),
            lambda shards: self._read_shards(shards, tracker),
            lambda samples: self._select(samples, tracker),
        ]
        if stream.shuffle_buffer > 1:
            # Split by sample: one shuffle for the whole job (as one process's), before the split.
            rank, worker = (0, 0) if where.by_sample else (where.rank, where.worker)
            seed = _stage_seed(stream.seed, self.epoch, rank, worker, 3)
            stages.append(wds.shuffle(stream.shuffle_buffer, initial=stream.shuffle_buffer, seed=seed))
        if where.by_sample and where.world_size > 1:
            complete_only = stream.drop_last  # training: equal shares; a single pass (eval, embed): every sample
            stages.append(lambda samples: _nth_of_each_group(samples, where.world_size, where.rank, complete_only))
        partial = not (stream.drop_last and stream.mode == "epoch")
        stages.append(wds.batched(stream.batch_size, collation_fn=None, partial=partial))
        if where.by_sample and where.num_workers > 1:
            stages.append(lambda windows: islice(windows, where.worker, None, where.num_workers))
        return iter(wds.DataPipeline(*stages))

    def count_windows(self, worker: int, num_workers: int) -> int:
        """Windows one worker would yield this epoch (epoch mode; reads, never decodes)."""
        tracker = _FailureTracker(self.stream.max_consecutive_failures)
        return sum(1 for _ in self._windows(self._placement(worker, num_workers), tracker))

    def run(self, worker: int, num_workers: int) -> Iterator[tuple[Any, dict[str, Any]]]:
        """``(batch or None, counts since the previous item)`` for one worker's share of the epoch."""
        where = self._placement(worker, num_workers)
        tracker = _FailureTracker(self.stream.max_consecutive_failures)
        windows = self._windows(where, tracker)
        skip = self.skips[worker]
        limit = self.limits[worker]
        if limit is not None:
            windows = islice(windows, limit)
        decode = self.stream.decode_sample
        for index, window in enumerate(windows):
            if index < skip:
                continue
            decoded = []
            for sample in window:
                try:
                    decoded.append(decode(sample))
                except Exception as error:  # noqa: BLE001 - a user decoder may raise anything on bad bytes
                    tracker.failure("decode", sample["__url__"], error, sample.get("__key__"))
                else:
                    tracker.success()
            tracker.counters.samples_decoded += len(decoded)
            if decoded:
                tracker.counters.batches += 1
                yield default_collate(decoded), tracker.take()
            else:
                tracker.counters.empty_batches += 1
                yield None, tracker.take()
        yield None, tracker.take()


__all__ = [
    "ConceptBalance",
    "MetadataFilter",
    "ShardStream",
    "TooManyFailuresError",
    "TruncatedShardError",
]
