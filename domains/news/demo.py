"""The built-in news set: out-of-context image–caption pairs in the NewsCLIPpings manner, offline.

Source: the Google Noto emoji art and names shipped in the npm package ``emoji-datasource-google@16.0.0``
(package MIT, Noto art Apache-2.0), fetched once as a tarball with ``npm pack`` (no node code runs). Every
emoji is a real image with its real caption (its Unicode name, e.g. "grinning face with smiling eyes").

Construction (deterministic):

1. Split by *story* so no image or caption crosses splits: emoji are grouped by their ``subcategory``
   (``animal-mammal``, ``food-fruit`` …); groups are ordered by a hash of their name and dealt into
   test (15%), val (15%) and train (the rest).
2. Each caption keeps its own image → a **real** post.
3. Each caption also gets a convincing wrong image → a **fake** post: the image of the emoji whose caption is
   most similar (all-MiniLM-L6-v2 cosine, NewsCLIPpings' ``sbert_text_text`` strategy), chosen within the
   same split, greedily from the most similar pairs down, so that every image is used as a wrong image at
   most once (a rare leftover caption reuses its most similar image). With each caption and (almost) each
   image appearing once real and once fake, neither text nor image alone reveals the label: only their
   pairing does.

Output folder: ``posts.jsonl`` (the plain JSONL layout of :func:`domains.news.data.read_jsonl_posts`, with
``pair_id``, ``similarity_score``, ``image_source_id`` and ``strategy`` per post), ``images/<unified>.png``,
``build_info.json`` (source sha256 and parameters: a cache with other parameters is rebuilt).
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from domains.news.data import FAKE, REAL
from shared.atomic_files import write_bytes_atomically, write_text_atomically
from shared.user_errors import UserError

EMOJI_PACKAGE = "emoji-datasource-google@16.0.0"
EMOJI_TARBALL_NAME = "emoji-datasource-google-16.0.0.tgz"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SOURCE_DIR = REPO_ROOT / ".tmp" / "sources"
DEFAULT_BUILTIN_DIR = REPO_ROOT / ".tmp" / "news" / "builtin"
INSTALL_HINT = (
    f"npm pack {EMOJI_PACKAGE} --pack-destination {DEFAULT_SOURCE_DIR} (or set NEWS_EMOJI_TARBALL to the .tgz path)"
)
_BUILD_VERSION = 2


class MissingSourcePackageError(UserError, FileNotFoundError):
    """The npm tarball the built-in set is made from is not on this machine (the message says how to fetch it)."""


def find_emoji_tarball(path: str | Path | None = None) -> Path:
    """Locate the ``emoji-datasource-google`` tarball: ``path``, ``$NEWS_EMOJI_TARBALL``, or the default folder.

    Raises:
        MissingSourcePackageError: naming the package and the command that fetches it.
    """
    candidate = Path(path or os.environ.get("NEWS_EMOJI_TARBALL") or DEFAULT_SOURCE_DIR / EMOJI_TARBALL_NAME)
    if not candidate.is_file():
        raise MissingSourcePackageError(
            f"the built-in news set needs the npm package {EMOJI_PACKAGE}, not found at {candidate}; "
            f"fetch it with: {INSTALL_HINT}"
        )
    return candidate


def minilm_text_embeddings(texts: list[str]) -> np.ndarray:
    """L2-normalised all-MiniLM-L6-v2 sentence embeddings (the core's ``minilm_text`` tower), shape (N, 384)."""
    import torch

    from domains.news.model import tokenize_to_longest
    from shared.towers import create_tower

    tower = create_tower("minilm_text").eval()
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(texts), 256):
            features = tower(tokenize_to_longest(tower.preprocess, texts[start : start + 256]))
            chunks.append(torch.nn.functional.normalize(features, dim=-1).numpy())
    return np.concatenate(chunks).astype(np.float32)


def assign_hard_negatives(similarity: np.ndarray) -> np.ndarray:
    """For each caption i, a different image j, most similar first, each image used at most once if possible.

    Greedy matching over (caption, image) pairs sorted by decreasing similarity. A caption left over at the
    end (its only free image is its own) takes its most similar other image, which is then used twice.

    Args:
        similarity: (N, N) caption–caption similarity (higher = more alike), N ≥ 2.

    Returns:
        (N,) index of the wrong image for each caption, never the caption's own.
    """
    n = similarity.shape[0]
    if n < 2:
        raise ValueError("need at least two captions to swap images")
    scores = similarity.astype(np.float64).copy()
    np.fill_diagonal(scores, -np.inf)
    order = np.argsort(-scores, axis=None, kind="stable")
    chosen = np.full(n, -1)
    image_used = np.zeros(n, dtype=bool)
    for flat in order[: n * (n - 1)]:
        caption, image = divmod(int(flat), n)
        if chosen[caption] < 0 and not image_used[image]:
            chosen[caption] = image
            image_used[image] = True
    leftover = chosen < 0
    chosen[leftover] = scores[leftover].argmax(axis=1)
    return chosen


def _split_of_groups(groups: list[str], fractions: tuple[float, float] = (0.15, 0.15)) -> dict[str, str]:
    """Deal groups, ordered by sha256 of their name, into test/val/train by sample count."""
    counts: dict[str, int] = {}
    for group in groups:
        counts[group] = counts.get(group, 0) + 1
    total = len(groups)
    order = sorted(counts, key=lambda g: hashlib.sha256(g.encode()).hexdigest())
    assignment: dict[str, str] = {}
    filled = {"test": 0, "val": 0}
    targets = {"test": fractions[0] * total, "val": fractions[1] * total}
    for group in order:
        split = next((s for s in ("test", "val") if filled[s] < targets[s]), "train")
        if split != "train":
            filled[split] += counts[group]
        assignment[group] = split
    return assignment


def build_emoji_outofcontext(
    out_dir: str | Path = DEFAULT_BUILTIN_DIR,
    tarball: str | Path | None = None,
    embed_texts: Callable[[list[str]], np.ndarray] = minilm_text_embeddings,
    max_emoji: int | None = None,
    rebuild: bool = False,
) -> Path:
    """Build (or reuse) the built-in out-of-context set; return the path of its ``posts.jsonl``.

    Args:
        out_dir: output folder (default ``.tmp/news/builtin`` in the repository).
        tarball: the ``emoji-datasource-google`` npm tarball (see :func:`find_emoji_tarball`).
        embed_texts: caption embedder used to pick hard negatives (default all-MiniLM-L6-v2).
        max_emoji: keep only the first N emoji in ``sort_order`` (small sets for tests); ``None`` = all.
        rebuild: ignore an existing cache.

    Raises:
        MissingSourcePackageError: the tarball is absent (the message says how to fetch it).
    """
    tarball = find_emoji_tarball(tarball)
    out_dir = Path(out_dir)
    source_sha = hashlib.sha256(tarball.read_bytes()).hexdigest()
    info = {"version": _BUILD_VERSION, "source": EMOJI_PACKAGE, "source_sha256": source_sha, "max_emoji": max_emoji}
    posts_path = out_dir / "posts.jsonl"
    info_path = out_dir / "build_info.json"
    if not rebuild and posts_path.is_file() and info_path.is_file():
        if json.loads(info_path.read_text(encoding="utf-8")) == info:
            return posts_path

    entries = None
    pngs: dict[str, bytes] = {}
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            # One sequential pass: random access into a .tgz re-decompresses from the start each time.
            for member in archive:
                if member.name == "package/emoji.json":
                    entries = json.load(archive.extractfile(member))  # type: ignore[arg-type]
                elif member.isfile() and member.name.startswith("package/img/google/64/"):
                    pngs[member.name.rsplit("/", 1)[-1]] = archive.extractfile(member).read()  # type: ignore[union-attr]
    except (tarfile.TarError, EOFError, OSError, ValueError) as error:
        raise MissingSourcePackageError(f"{tarball}: not a readable {EMOJI_PACKAGE} tarball ({error})") from None
    if entries is None:
        raise MissingSourcePackageError(f"{tarball}: no package/emoji.json; is it {EMOJI_PACKAGE}?")
    entries = [
        e
        for e in sorted(entries, key=lambda e: e["sort_order"])
        if e.get("has_img_google") and e.get("name") and e["image"] in pngs
    ]
    if max_emoji is not None:
        entries = entries[:max_emoji]
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        write_bytes_atomically(image_dir / entry["image"], pngs[entry["image"]])

    captions = [e["name"].lower() for e in entries]
    ids = [e["unified"].lower() for e in entries]
    split_of_group = _split_of_groups([e["subcategory"] for e in entries])
    splits = np.array([split_of_group[e["subcategory"]] for e in entries])
    embeddings = embed_texts(captions)
    records = []
    for split in ("train", "val", "test"):
        members_idx = np.flatnonzero(splits == split)
        if len(members_idx) < 2:
            continue
        sub = embeddings[members_idx]
        similarity = sub @ sub.T
        wrong = assign_hard_negatives(similarity)
        for local, index in enumerate(members_idx):
            other = members_idx[wrong[local]]
            common = {"text": captions[index], "split": split, "pair_id": ids[index]}
            records.append(
                common
                | {"id": f"{ids[index]}-real", "image": f"images/{entries[index]['image']}", "label": REAL}
                | {"image_source_id": ids[index], "similarity_score": 1.0, "strategy": "pristine"}
            )
            records.append(
                common
                | {"id": f"{ids[index]}-fake", "image": f"images/{entries[other]['image']}", "label": FAKE}
                | {"image_source_id": ids[other], "similarity_score": round(float(similarity[local, wrong[local]]), 6)}
                | {"strategy": "minilm_text_text"}
            )
    write_text_atomically(posts_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    write_text_atomically(info_path, json.dumps(info))
    return posts_path
