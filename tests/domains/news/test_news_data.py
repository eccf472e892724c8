"""News readers on fixtures in each real layout, the image/text policy, and the shard round trip."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import webdataset as wds
from PIL import Image

from domains.news.data import (
    FAKE,
    REAL,
    NewsFormatError,
    NewsPost,
    decode_news_sample,
    read_fakeddit,
    read_fakenewsnet,
    read_jsonl_posts,
    read_weibo,
    write_post_shards,
)


def write_png(path: Path, color: tuple[int, int, int], size: int = 12) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def write_jpg(path: Path, color: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), color).save(path, format="JPEG")


# ----------------------------------------------------------------------------------------- FakeNewsNet
def make_fakenewsnet(root: Path) -> None:
    posts = {
        ("politifact", "fake", "pf1"): {"text": "Senator said X", "top_img": "http://a.b/img/one.jpg?x=1"},
        ("politifact", "real", "pr1"): {"text": "", "title": "Real headline", "top_img": "http://a.b/two.jpg"},
        ("gossipcop", "fake", "gf1"): {"text": "Star wed", "top_img": "", "images": []},
    }
    for (source, label, post_id), content in posts.items():
        folder = root / source / label / post_id
        folder.mkdir(parents=True)
        (folder / "news content.json").write_text(json.dumps(content | {"url": f"http://{post_id}"}))
    write_jpg(root / "politifact/fake/pf1/one.jpg", (200, 0, 0))
    write_jpg(root / "politifact/real/pr1/images/two.jpg", (0, 200, 0))


def test_fakenewsnet_labels_from_folders_and_images_next_to_json(tmp_path: Path) -> None:
    make_fakenewsnet(tmp_path)
    posts = {p.post_id: p for p in read_fakenewsnet(tmp_path)}
    assert posts["pf1"].label == FAKE and posts["pr1"].label == REAL and posts["gf1"].label == FAKE
    assert posts["pf1"].source_dataset == "fakenewsnet-politifact"
    assert posts["pf1"].image_paths == [tmp_path / "politifact/fake/pf1/one.jpg"]
    assert posts["pr1"].image_paths == [tmp_path / "politifact/real/pr1/images/two.jpg"]
    assert posts["pr1"].text == "Real headline"  # empty text falls back to the title
    assert posts["gf1"].image_paths == []


def test_fakenewsnet_without_content_files_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(NewsFormatError, match=str(tmp_path)):
        list(read_fakenewsnet(tmp_path))


# -------------------------------------------------------------------------------------------- Fakeddit
FAKEDDIT_HEADER = "id\tclean_title\thasImage\tsubreddit\t2_way_label\t3_way_label\t6_way_label\n"


def test_fakeddit_polarity_and_images(tmp_path: Path) -> None:
    tsv = tmp_path / "multimodal_validate.tsv"
    tsv.write_text(
        FAKEDDIT_HEADER
        + "a1\tdog rides bike\tTrue\tpics\t1\t0\t0\n"
        + "a2\tmoon made of cheese\tTrue\ttheonion\t0\t1\t1\n"
        + "a3\tno picture here\tFalse\tnews\t0\t2\t4\n"
    )
    posts = list(read_fakeddit(tsv))
    assert [p.label for p in posts] == [REAL, FAKE, FAKE]
    assert posts[0].image_paths == [tmp_path / "images" / "a1.jpg"]
    assert posts[2].image_paths == []
    assert {p.split for p in posts} == {"val"}
    assert posts[1].extra["subreddit"] == "theonion"


def test_fakeddit_contradicting_labels_are_rejected_with_row(tmp_path: Path) -> None:
    tsv = tmp_path / "multimodal_train.tsv"
    tsv.write_text(FAKEDDIT_HEADER + "b1\tx\tTrue\tpics\t0\t0\t0\n")
    with pytest.raises(NewsFormatError, match=r"multimodal_train.tsv:2.*contradicts"):
        list(read_fakeddit(tsv))


def test_fakeddit_missing_columns(tmp_path: Path) -> None:
    tsv = tmp_path / "multimodal_test_public.tsv"
    tsv.write_text("id\ttitle\nq\tz\n")
    with pytest.raises(NewsFormatError, match="missing Fakeddit column"):
        list(read_fakeddit(tsv))


# ----------------------------------------------------------------------------------------------- Weibo
def weibo_record(tweet_id: str, urls: str, text: str) -> str:
    social = "|".join([tweet_id, "user", "http://t", "http://u", "2016-01-01", "1", "3", "4", "5"] + ["x"] * 6)
    return f"{social}\n{urls}\n{text}\n"


def test_weibo_three_line_records(tmp_path: Path) -> None:
    tweets = tmp_path / "tweets"
    tweets.mkdir()
    (tweets / "train_rumor.txt").write_text(
        weibo_record("101", "http://ww1.sinaimg.cn/large/r1.jpg|http://ww1.sinaimg.cn/large/r2.jpg", "谣言一")
        + weibo_record("102", "null", "谣言二")
    )
    (tweets / "test_nonrumor.txt").write_text(weibo_record("201", "http://x/n1.jpg", "真实新闻"))
    write_jpg(tmp_path / "rumor_images/r1.jpg", (1, 2, 3))
    write_jpg(tmp_path / "nonrumor_images/n1.jpg", (4, 5, 6))
    posts = {p.post_id: p for p in read_weibo(tmp_path)}
    assert posts["101"].label == FAKE and posts["201"].label == REAL
    assert posts["101"].split == "train" and posts["201"].split == "test"
    assert posts["101"].image_paths == [tmp_path / "rumor_images/r1.jpg", tmp_path / "rumor_images/r2.jpg"]
    assert posts["102"].image_paths == []
    assert posts["101"].text == "谣言一"
    assert posts["101"].extra["retweet_count"] == "3"


def test_weibo_truncated_record_is_reported(tmp_path: Path) -> None:
    (tmp_path / "tweets").mkdir()
    (tmp_path / "tweets" / "train_rumor.txt").write_text(weibo_record("1", "null", "a") + "only one line\n")
    with pytest.raises(NewsFormatError, match=r"train_rumor.txt: 4 lines"):
        list(read_weibo(tmp_path))


# ----------------------------------------------------------------------------------------------- JSONL
def test_jsonl_labels_paths_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "posts.jsonl"
    path.write_text(
        json.dumps({"id": 1, "text": "a", "image": "img/a.png", "label": "fake", "topic": "x"})
        + "\n\n"
        + json.dumps({"id": 2, "text": "b", "image": ["b.png", "c.png"], "label": 0})
        + "\n"
    )
    first, second = read_jsonl_posts(path)
    assert (first.post_id, first.label, first.image_paths, first.extra) == (
        "1",
        FAKE,
        [tmp_path / "img/a.png"],
        {"topic": "x"},
    )
    assert second.label == REAL and len(second.image_paths) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "text": "a"}\n{"id": 2}\n')
    with pytest.raises(NewsFormatError, match=r"bad.jsonl:2"):
        list(read_jsonl_posts(bad))
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"id": 1, "text": "a", "label": "maybe"}\n')
    with pytest.raises(NewsFormatError, match=r"odd.jsonl:1: label 'maybe'"):
        list(read_jsonl_posts(odd))


# --------------------------------------------------------------------------------- policy + shard round trip
def test_policy_counts_and_shard_round_trip(tmp_path: Path) -> None:
    good = write_png(tmp_path / "good.png", (10, 20, 30))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    write_png(tmp_path / "second.png", (90, 90, 90))
    posts = [
        NewsPost("p1", "a real caption", REAL, "jsonl", [tmp_path / "good.png"], text_en="in english"),
        # several images, the first unreadable: kept with the second, flagged
        NewsPost("p2", "two pictures", FAKE, "jsonl", [tmp_path / "broken.jpg", tmp_path / "second.png"]),
        NewsPost("p3", "   ", FAKE, "jsonl", [tmp_path / "good.png"]),
        NewsPost("p4", "no picture", REAL, "jsonl", []),
        NewsPost("p5", "picture gone", REAL, "jsonl", [tmp_path / "missing.png"]),
        NewsPost("p6", "only broken", FAKE, "jsonl", [tmp_path / "broken.jpg"]),
        NewsPost("p1", "same id again", REAL, "jsonl", [tmp_path / "good.png"]),
    ]
    out = tmp_path / "shards"
    report = write_post_shards(posts, out, default_split="train")
    assert report.written == 2 and report.read == 7
    assert dict(report.dropped) == {
        "empty text": 1,
        "no image": 1,
        "image file missing": 1,
        "image unreadable": 1,
        "duplicate post id": 1,
    }
    assert report.multi_image == 1 and report.unreadable_images_skipped == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_samples"] == 2 and manifest["skipped_total"] == 5
    assert json.loads((out / "ingest_report.json").read_text())["dropped"]["empty text"] == 1

    samples = [decode_news_sample(s) for s in wds.WebDataset(str(out / "shard-000000.tar"), shardshuffle=False)]
    by_id = {s["meta"]["post_id"]: s for s in samples}
    assert by_id["p1"]["text"] == "a real caption" and by_id["p1"]["label"] == REAL
    assert by_id["p1"]["text_en"] == "in english" and by_id["p1"]["split"] == "train"
    assert by_id["p2"]["label"] == FAKE and by_id["p2"]["meta"]["multi_image"] is True
    assert by_id["p2"]["meta"]["image_name"] == "second.png" and by_id["p2"]["meta"]["n_images"] == 2
    assert by_id["p1"]["image"].getpixel((3, 3)) == (10, 20, 30)
    raw = next(iter(wds.WebDataset(str(out / "shard-000000.tar"), shardshuffle=False)))
    assert raw["png"] == good  # PNG bytes are stored unchanged


def test_transparent_images_are_composited_on_white(tmp_path: Path) -> None:
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    sample = {"__key__": "k", "png": buffer.getvalue(), "txt": b"t", "cls": b"0", "json": b"{}"}
    assert decode_news_sample(sample)["image"].getpixel((0, 0)) == (255, 255, 255)
