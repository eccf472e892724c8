"""The built-in news set: out-of-context image–caption pairs in the NewsCLIPpings manner, offline.

Source: the Google Noto emoji art and names shipped in the npm package ``emoji-datasource-google@16.0.0``
(package MIT, Noto art Apache-2.0), fetched once as a tarball with ``npm pack`` (no node code runs). Every
emoji is a real image with its real caption (its Unicode name, e.g. "grinning face with smiling eyes").

Construction (deterministic):

1. Split by *emoji* within each *kind*: emoji are grouped by their ``subcategory`` (``animal-mammal``,
   ``food-fruit`` …); inside each group they are ordered by a hash of their code and dealt into test (15%),
   val (15%) and train (the rest). A test image and its caption are never seen in training, but its kind is
   (a "cat face" is tested, other mammals are trained on).
2. Each caption keeps its own image → a **real** post.
3. Each caption also gets one **fake** post; within each split the captions are dealt (by hash order) into
   three kinds of falsification, a third each:

   * ``hard_swap``: the image of another emoji of this group whose caption is most similar (all-MiniLM-L6-v2
     cosine, NewsCLIPpings' ``sbert_text_text`` strategy; greedy matching, each image used once:
     :func:`hard_swap_permutation`);
   * ``random_swap``: the image of a random other emoji of this group (a seeded derangement);
   * ``manipulated_image``: the caption's own image with its colours edited (hue turned by 180°; Fakeddit's
     "manipulated content"): the only kind an image alone can reveal.

   Swaps permute images inside their kind group, so each swapped-in image appears once real and once fake.
   Every caption appears once real and once fake, so **text alone carries no signal by construction**; the
   image alone carries signal only through the colour edit.

Output folder: ``posts.jsonl`` (the plain JSONL layout of :func:`domains.news.data.read_jsonl_posts`, with
``pair_id``, ``kind`` (the emoji's subcategory), ``similarity_score``, ``image_source_id`` and ``strategy``
per post: ``pristine``, ``hard_swap``, ``random_swap`` or ``manipulated_image``), ``images/<unified>.png``,
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
_BUILD_VERSION = 3
FAKE_KINDS = ("hard_swap", "random_swap", "manipulated_image")
"""The falsification kinds of the built-in set's fake posts (``strategy`` of a post; real posts: ``pristine``)."""
_RANDOM_SWAP_SEED = 20260515


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


def hard_swap_permutation(similarity: np.ndarray) -> np.ndarray:
    """:func:`assign_hard_negatives` made a permutation: every image is shown as a wrong image exactly once.

    The greedy matching leaves at most one caption c whose only free image is its own; it took the image
    of its most similar caption, already shown with another caption d. Here d takes c's image instead, so
    each image appears once real and once fake and the image alone says nothing about the label.
    """
    chosen = assign_hard_negatives(similarity)
    counts = np.bincount(chosen, minlength=len(chosen))
    if counts.max() > 1:
        (free,) = np.flatnonzero(counts == 0)  # the left-over caption's own image
        doubled = chosen[free]
        other = next(c for c in np.flatnonzero(chosen == doubled) if c != free)
        chosen[other] = free
    return chosen


def _hash_order(names: list[str]) -> list[int]:
    """Indices of ``names`` ordered by the sha256 of each name (a fixed, content-independent shuffle)."""
    return sorted(range(len(names)), key=lambda i: hashlib.sha256(names[i].encode()).hexdigest())


def split_within_kinds(kinds: list[str], ids: list[str], fractions: tuple[float, float] = (0.15, 0.15)) -> list[str]:
    """Split items so test items are unseen but their kinds are not: test/val/train shares inside each kind.

    Inside each kind the items are ordered by the sha256 of their id; the first ``round(test share × n)`` go
    to test, the next ``round(val share × n)`` to val, the rest to train. Kinds with fewer than 3 items stay
    entirely in train (a kind is never tested without being trained on).

    Returns:
        The split of each item.
    """
    members: dict[str, list[int]] = {}
    for index, kind in enumerate(kinds):
        members.setdefault(kind, []).append(index)
    splits = ["train"] * len(kinds)
    for indices in members.values():
        if len(indices) < 3:
            continue
        ordered = [indices[i] for i in _hash_order([ids[j] for j in indices])]
        n_test = max(1, round(fractions[0] * len(ordered)))
        n_val = max(1, round(fractions[1] * len(ordered))) if len(ordered) - n_test > 1 else 0
        for position, index in enumerate(ordered):
            splits[index] = "test" if position < n_test else "val" if position < n_test + n_val else "train"
    return splits


def random_derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly drawn permutation of ``range(n)`` with no fixed point (n ≥ 2), by rejection."""
    if n < 2:
        raise ValueError("need at least two items to swap")
    while True:
        order = rng.permutation(n)
        if not np.any(order == np.arange(n)):
            return order


def hue_rotated_png(png: bytes, degrees: int = 180) -> bytes:
    """The PNG with every pixel's hue turned by ``degrees`` (alpha kept): the set's image manipulation."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        rgba = image.convert("RGBA")
    hue, saturation, value = rgba.convert("RGB").convert("HSV").split()
    hue = hue.point(lambda h: (h + round(degrees * 256 / 360)) % 256)
    edited = Image.merge("HSV", (hue, saturation, value)).convert("RGB").convert("RGBA")
    edited.putalpha(rgba.getchannel("A"))
    buffer = io.BytesIO()
    edited.save(buffer, format="PNG")
    return buffer.getvalue()


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
    kinds = [str(e["subcategory"]) for e in entries]
    splits = np.array(split_within_kinds(kinds, ids))
    embeddings = embed_texts(captions)
    rng = np.random.default_rng(_RANDOM_SWAP_SEED)
    records = []
    for split in ("train", "val", "test"):
        members_idx = np.flatnonzero(splits == split)
        ordered = members_idx[_hash_order([ids[i] for i in members_idx])]
        groups = {kind: ordered[position :: len(FAKE_KINDS)] for position, kind in enumerate(FAKE_KINDS)}
        wrong_image: dict[int, tuple[int, float]] = {}  # caption → (image source, caption–caption cosine)
        for kind in ("hard_swap", "random_swap"):
            group = groups[kind]
            if len(group) < 2:  # a swap needs another image: a lone caption is manipulated instead
                groups["manipulated_image"] = np.concatenate([groups["manipulated_image"], group])
                groups[kind] = group[:0]
                continue
            similarity = embeddings[group] @ embeddings[group].T
            chosen = hard_swap_permutation(similarity) if kind == "hard_swap" else random_derangement(len(group), rng)
            for local, index in enumerate(group):
                wrong_image[int(index)] = (int(group[chosen[local]]), float(similarity[local, chosen[local]]))
        kind_of = {int(i): kind for kind, group in groups.items() for i in group}
        for index in members_idx:
            common = {"text": captions[index], "split": split, "pair_id": ids[index], "kind": kinds[index]}
            records.append(
                common
                | {"id": f"{ids[index]}-real", "image": f"images/{entries[index]['image']}", "label": REAL}
                | {"image_source_id": ids[index], "similarity_score": 1.0, "strategy": "pristine"}
            )
            kind = kind_of[int(index)]
            if kind == "manipulated_image":
                edited = entries[index]["image"].replace(".png", "-hue180.png")
                write_bytes_atomically(image_dir / edited, hue_rotated_png(pngs[entries[index]["image"]]))
                fake = {"image": f"images/{edited}", "image_source_id": ids[index], "similarity_score": 1.0}
            else:
                other, score = wrong_image[int(index)]
                fake = {"image": f"images/{entries[other]['image']}", "image_source_id": ids[other]}
                fake["similarity_score"] = round(score, 6)
            records.append(common | {"id": f"{ids[index]}-fake", "label": FAKE, "strategy": kind} | fake)
    write_text_atomically(posts_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    write_text_atomically(info_path, json.dumps(info))
    return posts_path
