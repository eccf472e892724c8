"""Explorer page: news posts — fake-news detection of a pasted post with its explanation, filtered browsing."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from apps.domain_page import inventory, render_domain_page, store_key
from apps.run_artifacts import NEWS_TRAIN_COMMAND, finished_run_folders, news_detector
from apps.store_access import query, store_path
from apps.upload_checks import IMAGE_KINDS, MAX_IMAGE_BYTES, UploadRejected, check_upload, decode_image

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


render_domain_page("news")
if store_path().is_file() and not inventory("news").empty and news_samples_columns():
    st.divider()
    detect_tab, browse_tab = st.tabs(["Is this post fake?", "Browse posts"])
    with detect_tab:
        run_ids = query("SELECT DISTINCT run_id FROM runs WHERE domain = 'news'")["run_id"].tolist()
        folders = finished_run_folders("news", NEWS_TRAIN_COMMAND, prefer=run_ids)
        if not folders:
            st.info("No trained detector beside the store (runs/news/<run>). Run `python -m domains.news.train`.")
        else:
            run_dir = st.selectbox("Detector run", [str(f) for f in folders], key="news_run")
            text = st.text_area("Post text", key="news_text", height=100)
            upload = st.file_uploader("Post image (PNG or JPEG)", type=["png", "jpg", "jpeg"], key="news_image")
            if upload is not None and text.strip():
                try:
                    data = upload.getvalue()
                    check_upload(data, IMAGE_KINDS, MAX_IMAGE_BYTES)
                    image = decode_image(data)
                except UploadRejected as error:
                    st.error(f"Upload refused: {error}")
                else:
                    from domains.news.post_scoring import explain

                    detector = news_detector(run_dir)
                    prediction = detector.predict([text], [image], [text])
                    result = explain(detector.model.branches, prediction, 0)
                    columns = st.columns(3)
                    columns[0].metric("Fake probability", f"{result['prob_fake']:.3f}")
                    columns[1].metric("Verdict", result["label"])
                    columns[2].metric("CLIP image–text similarity", f"{result['clip_similarity']:.3f}")
                    st.image(image, width=200)
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
        st.dataframe(posts, hide_index=True, width="stretch", key="news_posts")
