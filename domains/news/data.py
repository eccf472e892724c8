"""News posts: the raw layouts people have (FakeNewsNet, Fakeddit, Weibo, JSONL) → one record → shards.

Label convention, the same for every reader: ``label = 1`` means **fake** (rumor, falsified, misleading),
``label = 0`` means **real**. Each reader states how its source's own labels map onto this.

Image policy (applied by :func:`write_post_shards`, counted in ``manifest.json`` and ``ingest_report.json``):

* several images: the first one that exists and decodes is kept (deterministic, unlike the official code's
  random pick per epoch); the post is flagged ``multi_image`` and the number of candidates recorded;
* no image / image file missing: the post is dropped (FND-CLIP needs one image per post);
* unreadable image (not decodable by Pillow): that candidate is skipped; if none is left the post is dropped;
* empty text (only whitespace): the post is dropped.

Shard samples (webdataset keys): ``__key__`` (``<source>-<post_id>``, safe characters), ``jpg`` or ``png``
(image bytes), ``txt`` (post text), ``cls`` (label), ``json`` (everything else: ``post_id``, ``text_en``,
``source_dataset``, ``split``, ``image_name``, ``n_images``, ``multi_image``, ``extra``).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from shared.atomic_files import write_text_atomically
from shared.user_errors import UserError

FAKE = 1
REAL = 0
LABEL_NAMES = ("real", "fake")
TEXT_ONLY_REFUSAL = (
    "text-only posts are not supported: FND-CLIP scores a post from its text AND its image (CLIP similarity, "
    "image branch); give each post an image"
)
"""The one line every news command prints when it meets posts without an image."""
"""Class names indexed by label: ``LABEL_NAMES[1] == "fake"``."""

_SAFE_KEY = re.compile(r"[^A-Za-z0-9_-]+")


class NewsFormatError(UserError, ValueError):
    """A raw news file that does not have the layout its reader expects (the message names the file)."""


def _not_text(path: Path, error: UnicodeDecodeError) -> NewsFormatError:
    """The error for a file that is not UTF-8 text (binary, latin-1, UTF-16 …), naming file and byte."""
    byte = error.object[error.start : error.start + 1].hex()
    return NewsFormatError(f"{path}: not UTF-8 text (byte 0x{byte}: {error.reason}); convert the file to UTF-8")


@dataclass
class NewsPost:
    """One post, normalised across sources.

    Attributes:
        post_id: identifier unique within ``source_dataset``.
        text: the post text (original language).
        label: 1 = fake, 0 = real, ``None`` when the source has no label (inference data).
        source_dataset: ``fakenewsnet-politifact``, ``fakeddit``, ``weibo``, ``jsonl`` …
        image_paths: candidate image files, in the source's order (may be empty or missing on disk).
        text_en: optional English text for English-only CLIP towers (FND-CLIP's ``texts`` column).
        split: ``train``/``val``/``test`` when the source defines it, else ``None``.
        extra: source-specific fields kept for analysis (social counts, subreddit, 6-way label, …).
    """

    post_id: str
    text: str
    label: int | None
    source_dataset: str
    image_paths: list[Path] = field(default_factory=list)
    text_en: str | None = None
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _label_from_value(value: Any, where: str) -> int | None:
    """Accept 0/1 (1 = fake), booleans (True = fake) or the words fake/real/rumor/non-rumor/true/false."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return FAKE if value else REAL
    if isinstance(value, int) and value in (0, 1):
        return value
    words = {"fake": FAKE, "rumor": FAKE, "false": FAKE, "falsified": FAKE, "real": REAL, "true": REAL}
    words |= {"non-rumor": REAL, "nonrumor": REAL, "pristine": REAL, "1": FAKE, "0": REAL}
    text = str(value).strip().lower()
    if text in words:
        return words[text]
    raise NewsFormatError(f"{where}: label {value!r} is not one of 0/1, true/false, fake/real, rumor/non-rumor")


# ----------------------------------------------------------------------------------------------- JSONL
def read_jsonl_posts(path: str | Path, source_dataset: str = "jsonl") -> Iterator[NewsPost]:
    """Read posts from a JSON-lines file, one object per line.

    Fields: ``id`` (required), ``text`` (required), ``image`` (a path, relative to the file's folder, or a
    list of paths), ``label`` (optional; 1/"fake" = fake, 0/"real" = real), ``text_en``, ``split``; any other
    fields go to ``extra``.

    Raises:
        NewsFormatError: a line that is not a JSON object or lacks ``id``/``text``, naming file and line.
    """
    path = Path(path)
    try:
        stream = path.open(encoding="utf-8")
    except IsADirectoryError:
        raise NewsFormatError(f"{path}: is a folder; expected a JSON-lines file") from None
    with stream:
        try:
            yield from _jsonl_records(path, stream, source_dataset)
        except UnicodeDecodeError as error:
            raise _not_text(path, error) from None


def _jsonl_records(path: Path, lines: Iterable[str], source_dataset: str) -> Iterator[NewsPost]:
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise NewsFormatError(f"{where}: not valid JSON ({error.msg})") from None
        except RecursionError:
            raise NewsFormatError(f"{where}: JSON nested too deeply") from None
        if not isinstance(record, dict) or "id" not in record or "text" not in record:
            raise NewsFormatError(f"{where}: each line must be an object with 'id' and 'text'")
        images = record.pop("image", None) or []
        images = [images] if isinstance(images, str) else images
        if not isinstance(images, list) or not all(isinstance(image, str) for image in images):
            raise NewsFormatError(f"{where}: 'image' must be a path or a list of paths")
        if not isinstance(record["text"], str | None):
            raise NewsFormatError(f"{where}: 'text' must be a string")
        yield NewsPost(
            post_id=str(record.pop("id")),
            text=str(record.pop("text") or ""),
            label=_label_from_value(record.pop("label", None), where),
            source_dataset=source_dataset,
            image_paths=[path.parent / str(image) for image in images],
            text_en=record.pop("text_en", None),
            split=record.pop("split", None),
            extra=record,
        )


# ----------------------------------------------------------------------------------------- FakeNewsNet
def read_fakenewsnet(root: str | Path) -> Iterator[NewsPost]:
    """Read the FakeNewsNet crawler output: ``{root}/{source}/{fake|real}/{id}/news content.json``.

    ``source`` is ``politifact`` or ``gossipcop`` (any folder name is accepted and recorded as
    ``fakenewsnet-<source>``). The label comes from the folder: ``fake`` → 1, ``real`` → 0. Text is the
    article ``text``, falling back to ``title``. Image candidates, in order: the file named after the last
    path component of ``top_img``, then of each URL in ``images``, looked up in the post folder and its
    ``images/`` subfolder (the crawler stores URLs only; users download images next to the JSON).

    Raises:
        NewsFormatError: no ``*/{fake,real}/*/news content.json`` under ``root``, or a JSON file that is not
            an object; the message names the file.
    """
    root = Path(root)
    files = sorted(root.glob("*/*/*/news content.json"))
    files = [f for f in files if f.parent.parent.name in ("fake", "real")]
    if not files:
        raise NewsFormatError(f"{root}: no '<source>/<fake|real>/<id>/news content.json' files found")
    for content_file in files:
        post_dir = content_file.parent
        try:
            content = json.loads(content_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise NewsFormatError(f"{content_file}: not valid JSON ({error.msg})") from None
        except UnicodeDecodeError as error:
            raise _not_text(content_file, error) from None
        if not isinstance(content, dict):
            raise NewsFormatError(f"{content_file}: expected a JSON object (newspaper3k article)")
        urls = [content.get("top_img")] + list(content.get("images") or [])
        names = list(dict.fromkeys(_url_basename(u) for u in urls if u))
        candidates = []
        for name in names:
            found = [p for p in (post_dir / name, post_dir / "images" / name) if p.exists()]
            candidates.append(found[0] if found else post_dir / name)
        source = post_dir.parent.parent.name
        yield NewsPost(
            post_id=post_dir.name,
            text=str(content.get("text") or content.get("title") or ""),
            label=FAKE if post_dir.parent.name == "fake" else REAL,
            source_dataset=f"fakenewsnet-{source}",
            image_paths=candidates,
            extra={
                "title": content.get("title"),
                "url": content.get("url"),
                "publish_date": content.get("publish_date"),
                "authors": content.get("authors"),
            },
        )


def _url_basename(url: str) -> str:
    """Last path component of a URL or path, without query string."""
    return str(url).split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


# -------------------------------------------------------------------------------------------- Fakeddit
_FAKEDDIT_COLUMNS = ("id", "clean_title", "2_way_label")


def read_fakeddit(tsv_path: str | Path, image_dir: str | Path | None = None) -> Iterator[NewsPost]:
    """Read a Fakeddit TSV (``multimodal_{train,validate,test_public}.tsv``).

    Text is ``clean_title``; the image is ``{image_dir}/<id>.jpg`` (default ``images/`` beside the TSV, the
    layout of Fakeddit's downloader), absent when ``hasImage`` is false. Label: ``2_way_label`` where
    **1 = true (real) and 0 = fake**, mapped to our 1 = fake. The polarity is checked against
    ``6_way_label`` (0 = True) when that column is present: a row with ``6_way_label == 0`` must be real.
    The split is taken from the file name (``train``/``validate`` → ``val``/``test``).

    Raises:
        NewsFormatError: missing columns, a non-0/1 label, or 2-way and 6-way labels that disagree.
    """
    tsv_path = Path(tsv_path)
    image_dir = Path(image_dir) if image_dir is not None else tsv_path.parent / "images"
    split = next((s for k, s in (("train", "train"), ("valid", "val"), ("test", "test")) if k in tsv_path.name), None)
    if tsv_path.is_dir():
        raise NewsFormatError(f"{tsv_path}: is a folder; expected a Fakeddit .tsv file")
    with tsv_path.open(encoding="utf-8", newline="") as stream:
        try:
            yield from _fakeddit_rows(tsv_path, csv.DictReader(stream, delimiter="\t"), image_dir, split)
        except UnicodeDecodeError as error:
            raise _not_text(tsv_path, error) from None
        except csv.Error as error:
            raise NewsFormatError(f"{tsv_path}: not a readable TSV ({error})") from None


def _fakeddit_rows(tsv_path: Path, reader: csv.DictReader, image_dir: Path, split: str | None) -> Iterator[NewsPost]:
    missing = [c for c in _FAKEDDIT_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise NewsFormatError(f"{tsv_path}: missing Fakeddit column(s) {missing}")
    for row_number, row in enumerate(reader, start=2):
        where = f"{tsv_path}:{row_number}"
        two_way = _int_field(row["2_way_label"], where, "2_way_label")
        if two_way not in (0, 1):
            raise NewsFormatError(f"{where}: 2_way_label must be 0 or 1, got {two_way}")
        label = REAL if two_way == 1 else FAKE
        six_way = row.get("6_way_label")
        if six_way not in (None, ""):
            six_way_value = _int_field(six_way, where, "6_way_label")
            if (six_way_value == 0) != (label == REAL):
                raise NewsFormatError(
                    f"{where}: 2_way_label={two_way} contradicts 6_way_label={six_way_value} "
                    "(expected 2-way 1 = true exactly when 6-way 0 = True)"
                )
        has_image = str(row.get("hasImage", "True")).strip().lower() in ("true", "1")
        yield NewsPost(
            post_id=row["id"],
            text=row["clean_title"] or "",
            label=label,
            source_dataset="fakeddit",
            image_paths=[image_dir / f"{row['id']}.jpg"] if has_image else [],
            split=split,
            extra={k: row.get(k) for k in ("subreddit", "domain", "score", "num_comments", "6_way_label")},
        )


def _int_field(value: str, where: str, name: str) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        raise NewsFormatError(f"{where}: {name} is not a finite number: {value!r}") from None


# ----------------------------------------------------------------------------------------------- Weibo
_WEIBO_SOCIAL_FIELDS = (
    "tweet_id",
    "user_name",
    "tweet_url",
    "user_url",
    "publish_time",
    "original",
    "retweet_count",
    "comment_count",
    "praise_count",
)


def read_weibo(root: str | Path) -> Iterator[NewsPost]:
    """Read the Weibo rumour set (Jin et al. 2017): ``tweets/{train,test}_{rumor,nonrumor}.txt``.

    Each post is three lines: ``|``-separated social fields (tweet id first), ``|``-separated image URLs,
    the post text. Images are looked up by URL file name in ``rumor_images/`` or ``nonrumor_images/``
    under ``root``. Label: ``rumor`` files → 1 (fake), ``nonrumor`` → 0. Split from the file name.

    Raises:
        NewsFormatError: no tweet files, or a file whose line count is not a multiple of three.
    """
    root = Path(root)
    files = sorted((root / "tweets").glob("*_*rumor.txt"))
    if not files:
        raise NewsFormatError(f"{root}: no tweets/{{train,test}}_{{rumor,nonrumor}}.txt files found")
    for tweet_file in files:
        split_name, kind = tweet_file.stem.split("_", 1)
        label = FAKE if kind == "rumor" else REAL
        try:
            text = tweet_file.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise _not_text(tweet_file, error) from None
        lines = [line.rstrip("\r\n") for line in text.splitlines()]
        while lines and not lines[-1].strip():
            lines.pop()
        if len(lines) % 3:
            raise NewsFormatError(
                f"{tweet_file}: {len(lines)} lines is not a multiple of 3 (social fields, image URLs, text)"
            )
        for start in range(0, len(lines), 3):
            social = lines[start].split("|")
            urls = [u for u in lines[start + 1].split("|") if u.strip() and u.strip() != "null"]
            candidates = []
            for url in urls:
                name = _url_basename(url)
                found = [root / d / name for d in ("rumor_images", "nonrumor_images") if (root / d / name).exists()]
                candidates.append(found[0] if found else root / f"{kind}_images" / name)
            yield NewsPost(
                post_id=social[0].strip() or f"{tweet_file.stem}-{start // 3}",
                text=lines[start + 2],
                label=label,
                source_dataset="weibo",
                image_paths=candidates,
                split="test" if split_name == "test" else "train",
                extra=dict(zip(_WEIBO_SOCIAL_FIELDS[1:], social[1:], strict=False)),
            )


# ------------------------------------------------------------------------------------------ shard writing
@dataclass
class IngestReport:
    """What happened to each post during ingestion (written as ``ingest_report.json``)."""

    read: int = 0
    written: int = 0
    multi_image: int = 0
    dropped: Counter = field(default_factory=Counter)
    unreadable_images_skipped: int = 0
    label_counts: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able view."""
        return {
            "read": self.read,
            "written": self.written,
            "multi_image_kept_first_readable": self.multi_image,
            "unreadable_images_skipped": self.unreadable_images_skipped,
            "dropped": dict(self.dropped),
            "label_counts": {LABEL_NAMES[k] if k is not None else "unlabeled": v for k, v in self.label_counts.items()},
        }


def load_readable_image(path: Path) -> tuple[bytes, str] | None:
    """Return ``(bytes, extension)`` for an image Pillow can fully decode, else ``None``.

    JPEG and PNG bytes are kept as they are; other formats are re-encoded as PNG.
    """
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            image_format = image.format
            if image_format not in ("JPEG", "PNG"):
                buffer = io.BytesIO()
                image.convert("RGBA" if "A" in image.getbands() else "RGB").save(buffer, format="PNG")
                return buffer.getvalue(), "png"
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
    return data, "jpg" if image_format == "JPEG" else "png"


def post_sample_key(post: NewsPost) -> str:
    """The webdataset ``__key__`` of a post: ``<source>-<post_id>`` with unsafe characters replaced."""
    return _SAFE_KEY.sub("_", f"{post.source_dataset}-{post.post_id}")


def write_post_shards(
    posts: Iterable[NewsPost],
    out_dir: str | Path,
    max_samples_per_shard: int = 5000,
    default_split: str | None = None,
    overwrite: bool = False,
) -> IngestReport:
    """Apply the image/text policy (module docstring) and write posts as webdataset shards.

    Args:
        posts: records from any ``read_*`` function.
        out_dir: output folder; gets ``shard-*.tar``, ``manifest.json`` (through the core's ShardWriter, with
            every dropped post and its reason) and ``ingest_report.json``.
        max_samples_per_shard: shard size bound.
        default_split: split recorded for posts whose source has none.
        overwrite: replace shards already in ``out_dir`` (else the core writer refuses).

    Returns:
        The counts also written to ``ingest_report.json``.
    """
    from shared.shards import ShardWriter

    out_dir = Path(out_dir)
    report = IngestReport()
    seen_keys: set[str] = set()
    with ShardWriter(
        out_dir,
        prefix="shard",
        max_samples=max_samples_per_shard,
        track_json_fields=("split", "source_dataset"),
        overwrite=overwrite,
    ) as writer:
        for post in posts:
            report.read += 1
            key = post_sample_key(post)
            source = f"{post.source_dataset}:{post.post_id}"
            reason = None
            image = None
            if key in seen_keys:
                reason = "duplicate post id"
            elif not post.text.strip():
                reason = "empty text"
            elif not post.image_paths:
                reason = "no image"
            else:
                existing = [p for p in post.image_paths if p.is_file()]
                for candidate in existing:
                    image = load_readable_image(candidate)
                    if image is not None:
                        image_name = candidate.name
                        break
                    report.unreadable_images_skipped += 1
                if image is None:
                    reason = "image file missing" if not existing else "image unreadable"
            if reason is not None:
                report.dropped[reason] += 1
                writer.skip(source, reason)
                continue
            seen_keys.add(key)
            multi = len(post.image_paths) > 1
            report.multi_image += int(multi)
            report.label_counts[post.label] += 1
            image_bytes, extension = image
            writer.write(
                {
                    "__key__": key,
                    extension: image_bytes,
                    "txt": post.text,
                    "cls": -1 if post.label is None else post.label,
                    "json": {
                        "post_id": post.post_id,
                        "text_en": post.text_en,
                        "source_dataset": post.source_dataset,
                        "split": post.split or default_split,
                        "image_name": image_name,
                        "n_images": len(post.image_paths),
                        "multi_image": multi,
                        "extra": post.extra,
                    },
                }
            )
            report.written += 1
    write_text_atomically(out_dir / "ingest_report.json", json.dumps(report.as_dict(), indent=2, default=str))
    return report


def decode_news_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """Turn a raw shard sample (bytes values) into ``{key, text, text_en, image (PIL RGB), label, split, …}``.

    Raises:
        NewsFormatError: the sample has no image or no text (a shard not written by :func:`write_post_shards`).
    """
    key = sample.get("__key__", "?")
    image_bytes = sample.get("jpg") or sample.get("png")
    text = sample.get("txt")
    if image_bytes is None or text is None:
        raise NewsFormatError(f"sample {key}: needs an image (jpg/png) and a txt field")
    meta = sample.get("json") or {}
    if isinstance(meta, bytes | str):
        meta = json.loads(meta)
    label = sample.get("cls", -1)
    label = int(label.decode() if isinstance(label, bytes) else label)
    return {
        "key": key,
        "text": text.decode("utf-8") if isinstance(text, bytes) else text,
        "text_en": meta.get("text_en"),
        "image": open_post_image(image_bytes, where=f"sample {key}"),
        "label": label,
        "split": meta.get("split"),
        "meta": meta,
    }


def image_as_rgb(image: Image.Image) -> Image.Image:
    """RGB copy of ``image``; transparent pixels (emoji, clip art) are composited onto white.

    Covers every way a picture can carry transparency: an alpha band (RGBA, LA, PA, premultiplied RGBa/La)
    and a palette or single colour marked transparent (PNG ``tRNS``: ``image.info["transparency"]``).
    """
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def open_post_image(source: bytes | str | Path, where: str | None = None) -> Image.Image:
    """THE way a post's image is read, by training (shards), ``detect`` and the explorer alike.

    Decodes the file or bytes fully with Pillow and returns an RGB image with any transparency composited
    onto white (:func:`image_as_rgb`), so the same picture gives the same features (and the same CLIP
    similarity) whichever path it came through.

    Args:
        source: image bytes (a shard sample, an upload) or a file path.
        where: what to name in an error (default: the path, or "image bytes").

    Raises:
        NewsFormatError: the file is missing, a folder, or not an image Pillow can decode (named).
    """
    where = where or (str(source) if not isinstance(source, bytes) else "image bytes")
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image_as_rgb(image)
    except IsADirectoryError:
        raise NewsFormatError(f"{where}: is a folder; expected an image file") from None
    except FileNotFoundError:
        raise NewsFormatError(f"{where}: no such file") from None
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError, SyntaxError):
        raise NewsFormatError(f"{where}: not a readable image (PNG, JPEG or another format Pillow decodes)") from None
