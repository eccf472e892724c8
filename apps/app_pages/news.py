"""Explorer page: news posts — fake-news detection of a pasted post with its explanation, filtered browsing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from apps.domain_page import inventory, render_domain_page, render_training_curves, store_key
from apps.run_artifacts import NEWS_TRAIN_COMMAND, config_strings, finished_run_folders, score_news_post
from apps.shard_media import IMAGE_COLUMN_CONFIG, image_bytes, image_index, shard_files, with_thumbnails
from apps.store_access import query, store_path
from apps.upload_checks import IMAGE_KINDS, MAX_IMAGE_BYTES, UploadRejected, check_upload, decode_image
from shared.run_folder import RunFolder

BROWSE_LIMIT = 500


def news_samples_columns() -> list[str]:
    """Columns of ``samples_news`` (the allowlist for filters); empty when the table does not exist."""
    return _news_samples_columns(store_key())


@st.cache_data(ttl=30, show_spinner=False)
def _news_samples_columns(store: str) -> list[str]:
    return query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'samples_news' ORDER BY ordinal_position"
    )["column_name"].tolist()


@st.cache_data(ttl=30, show_spinner=False)
def distinct_values(store: str, column: str) -> list[str]:
    """Distinct values of an allow-listed text column of ``samples_news`` (``store``: the cache key)."""
    if column not in ("split", "label", "source_dataset") or column not in news_samples_columns():
        raise ValueError(f"not a filterable column: {column!r}")
    frame = query(f"SELECT DISTINCT {column} AS v FROM samples_news ORDER BY v")  # noqa: S608 — allow-listed name
    return [str(v) for v in frame["v"].tolist()]


def browse_posts(filters: dict[str, list[str]], prob_range: tuple[float, float], contains: str) -> pd.DataFrame:
    """Posts matching the filters; column names come from a fixed allowlist, values are bound parameters."""
    clauses, parameters = [], []
    for column, values in filters.items():
        if column not in ("split", "label", "source_dataset"):
            raise ValueError(f"not a filterable column: {column!r}")
        if values:
            clauses.append(f"{column} IN ({', '.join('?' for _ in values)})")
            parameters.extend(values)
    if "prob_fake" in news_samples_columns():
        clauses.append("prob_fake BETWEEN ? AND ?")
        parameters.extend(prob_range)
    if contains:
        clauses.append("text ILIKE '%' || ? || '%'")
        parameters.append(contains)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    parameters.append(BROWSE_LIMIT)
    return query(f"SELECT * FROM samples_news {where} ORDER BY sample_id LIMIT ?", parameters)  # noqa: S608


NEAR_CHANCE_AUC = 0.6
"""Below this test ROC-AUC the page warns that the detector's verdicts are close to guessing."""


def news_image_index() -> dict[str, tuple[str, str]]:
    """Post id → image in the shards the news runs trained on (their config.yaml)."""
    folders = finished_run_folders("news", NEWS_TRAIN_COMMAND)
    return image_index(shard_files(text for folder in folders for text in config_strings(folder)))


def news_image_reader():
    """News's one image reader (transparency composited onto white), as a bytes → image function."""
    from domains.news.data import open_post_image

    return open_post_image


def news_thumbnails(frame):
    """``frame`` with the post's picture, read the way training and ``detect`` read it."""
    return with_thumbnails(frame, news_image_index(), news_image_reader())


def news_image(sample_id: str):
    """A post's full picture from the run's shards, or None."""
    data = image_bytes(news_image_index(), sample_id)
    return news_image_reader()(data) if data is not None else None


def detector_quality(run_dir: str) -> dict:
    """The run's test evaluation (``eval/metrics.json``): ROC-AUC, accuracy …; empty when it has none."""
    try:
        return RunFolder(Path(run_dir)).read_eval_metrics()
    except Exception:  # noqa: BLE001 — a run without evaluation shows a note instead
        return {}


def show_detector_quality(run_dir: str) -> float | None:
    """The run's ROC and confusion plots and headline numbers; returns its test ROC-AUC (None if unknown)."""
    quality = detector_quality(run_dir)
    auc = quality.get("roc_auc")
    columns = st.columns(3)
    columns[0].metric("Test ROC-AUC", f"{auc:.3f}" if isinstance(auc, float | int) else "n/a")
    accuracy = quality.get("accuracy")
    columns[1].metric("Test accuracy", f"{accuracy:.3f}" if isinstance(accuracy, float | int) else "n/a")
    columns[2].metric("Test posts", quality.get("num_posts", "n/a"))
    plots = [Path(run_dir) / "eval" / name for name in ("roc.png", "confusion_matrix.png")]
    shown = [plot for plot in plots if plot.is_file()]
    for column, plot in zip(st.columns(2), shown):
        column.image(str(plot), caption=plot.stem.replace("_", " "), width="stretch")
    if not shown:
        st.caption("This run has no ROC or confusion plot (run `python -m domains.news.evaluate`).")
    return float(auc) if isinstance(auc, float | int) else None


def verdict_note(auc: float | None) -> None:
    """The detector's test ROC-AUC beside a verdict, with a warning when it is near chance."""
    if auc is None:
        st.warning("This detector has no test evaluation: treat its verdict as unvalidated.")
    elif auc < NEAR_CHANCE_AUC:
        st.warning(f"This detector's test ROC-AUC is {auc:.3f}, near chance (0.5): its verdicts are close to guessing.")
    else:
        st.caption(f"Detector test ROC-AUC: {auc:.3f}")


render_domain_page("news", thumbnails=news_thumbnails, image_of=news_image)
if store_path().is_file() and not inventory("news").empty and news_samples_columns():
    st.divider()
    detect_tab, browse_tab = st.tabs(["Is this post fake?", "Browse posts"])
    folders_for_auc = finished_run_folders("news", NEWS_TRAIN_COMMAND)
    with detect_tab:
        run_ids = query("SELECT DISTINCT run_id FROM runs WHERE domain = 'news'")["run_id"].tolist()
        folders = finished_run_folders("news", NEWS_TRAIN_COMMAND, prefer=run_ids)
        if not folders:
            st.info("No trained detector beside the store (runs/news/<run>). Run `python -m domains.news.train`.")
        else:
            run_dir = st.selectbox("Detector run", [str(f) for f in folders], key="news_run")
            test_auc = show_detector_quality(run_dir)
            text = st.text_area("Post text", key="news_text", height=100)
            upload = st.file_uploader("Post image (PNG or JPEG)", type=["png", "jpg", "jpeg"], key="news_image")
            if upload is not None and text.strip():
                try:
                    data = upload.getvalue()
                    check_upload(data, IMAGE_KINDS, MAX_IMAGE_BYTES)
                    decode_image(data)  # size and decompression-bomb checks on the upload
                    result = score_news_post(run_dir, text, data)
                except UploadRejected as error:
                    st.error(f"Upload refused: {error}")
                except ValueError as error:
                    st.error(str(error))
                else:
                    picture, numbers = st.columns([1, 3])
                    picture.image(news_image_reader()(data), width=200, caption="as the detector sees it")
                    with numbers:
                        columns = st.columns(3)
                        columns[0].metric("Fake probability", f"{result['prob_fake']:.3f}")
                        columns[1].metric("Verdict", result["label"])
                        columns[2].metric("CLIP image–text similarity", f"{result['clip_similarity']:.3f}")
                        verdict_note(test_auc)
                    weights = pd.DataFrame(
                        {"branch": list(result["attention"]), "weight": list(result["attention"].values())}
                    )
                    st.plotly_chart(
                        px.bar(weights, x="branch", y="weight", title="Modality weights"), key="news_weights"
                    )
                    st.caption("Modality weights: the detector's attention over its unimodal and cross-modal branches.")
            elif upload is None or not text.strip():
                st.caption("Paste the text and upload the image of a post.")
    with browse_tab:
        columns = news_samples_columns()
        filters = {
            column: st.multiselect(column, distinct_values(store_key(), column), key=f"news_filter_{column}")
            for column in ("split", "label", "source_dataset")
            if column in columns
        }
        prob_range = st.slider("Fake probability", 0.0, 1.0, (0.0, 1.0), key="news_prob_range")
        contains = st.text_input("Text contains", key="news_contains")
        posts = browse_posts(filters, prob_range, contains)
        st.caption(f"{len(posts)} posts (at most {BROWSE_LIMIT})")
        if "prob_fake" in posts.columns and folders_for_auc:
            verdict_note(detector_quality(str(folders_for_auc[0])).get("roc_auc"))
        st.dataframe(
            news_thumbnails(posts),
            hide_index=True,
            width="stretch",
            key="news_posts",
            column_config=IMAGE_COLUMN_CONFIG,
        )
    st.divider()
    render_training_curves("news")
