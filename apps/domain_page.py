"""The per-domain explorer page: pick a model and a sample, see neighbours, a 2-D map and details.

Every identifier (domain, table) comes from an allowlist built from the store's own catalogue; every value
reaches SQL as a bound parameter.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from apps.store_access import nearest, query, store_path

MAP_POINTS = 3000


def store_key() -> str:
    """Cache key part naming the store and its current file (a swapped-in store is a new key)."""
    path = store_path()
    stat = path.stat() if path.is_file() else None
    return f"{path.resolve()}:{stat.st_mtime_ns if stat else 0}"


def inventory(domain: str) -> pd.DataFrame:
    """Models and modalities of ``domain`` in the store (cached briefly; the store changes on export)."""
    return _inventory(store_key(), domain)


def sample_table(domain: str) -> pd.DataFrame:
    """The domain's sample table (empty when the domain wrote none)."""
    return _sample_table(store_key(), domain)


@st.cache_data(ttl=30, show_spinner=False)
def _inventory(store: str, domain: str) -> pd.DataFrame:
    # ``store`` is only part of the cache key: a query reads the current store_path().
    return query(
        "SELECT modality, model_name, model_version, dim, num_vectors FROM embedding_inventory "
        "WHERE domain = ? ORDER BY modality, model_name, model_version",
        [domain],
    )


@st.cache_data(ttl=30, show_spinner=False)
def _sample_table(store: str, domain: str) -> pd.DataFrame:
    tables = query("SELECT table_name FROM information_schema.tables WHERE table_name = ?", [f"samples_{domain}"])
    if tables.empty:
        return pd.DataFrame(columns=["sample_id"])
    # The table name was checked against the catalogue above, and the domain name against an allowlist.
    return query(f"SELECT * FROM samples_{domain} ORDER BY sample_id LIMIT 100000")  # noqa: S608


@st.cache_data(ttl=30, show_spinner=False)
def map_points(store: str, domain: str, modality: str, model_name: str, model_version: str, dim: int) -> pd.DataFrame:
    """A 2-D PCA map of up to :data:`MAP_POINTS` vectors of one model (``store``: the cache key of :func:`store_key`)."""
    table = f"embeddings_{int(dim)}"
    frame = query(
        f"SELECT sample_id, vec, meta FROM {table} WHERE domain = ? AND modality = ? "  # noqa: S608
        "AND model_name = ? AND model_version = ? ORDER BY sample_id LIMIT ?",
        [domain, modality, model_name, model_version, MAP_POINTS],
    )
    if frame.empty:
        return frame
    vectors = np.stack(frame["vec"].to_numpy()).astype(np.float32)
    centred = vectors - vectors.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    coordinates = centred @ components[:2].T
    return pd.DataFrame({"sample_id": frame["sample_id"], "x": coordinates[:, 0], "y": coordinates[:, 1]})


def render_domain_page(domain: str) -> None:
    """Draw the page for ``domain`` (one of the suite's four domains)."""
    if domain not in ("biomed", "astro", "news", "recsys"):
        raise ValueError(f"unknown domain {domain!r}")
    st.title(f"{domain.capitalize()} embeddings")
    if not store_path().is_file():
        st.warning("No embedding store yet. Run `make demo` first.")
        return
    models = inventory(domain)
    if models.empty:
        st.info(f"The store has no {domain} embeddings yet. Run `python -m domains.{domain}.embed`.")
        return
    models["label"] = models["modality"] + " · " + models["model_name"] + " " + models["model_version"]
    choice = st.selectbox("Modality and model", models["label"].tolist(), key=f"{domain}_model")
    chosen = models[models["label"] == choice].iloc[0]
    st.caption(f"{int(chosen['num_vectors'])} vectors of dimension {int(chosen['dim'])}")

    samples = sample_table(domain)
    label_column = next((c for c in ("label", "class", "label_name", "split") if c in samples.columns), None)
    points = map_points(
        store_key(), domain, chosen["modality"], chosen["model_name"], chosen["model_version"], int(chosen["dim"])
    )
    if not points.empty and label_column:
        points = points.merge(samples[["sample_id", label_column]], on="sample_id", how="left")
        points[label_column] = points[label_column].astype(str)

    left, right = st.columns([3, 2])
    with left:
        st.subheader("Map (PCA)")
        if points.empty:
            st.info("No vectors to map.")
            selection_ids: list[str] = []
        else:
            figure = px.scatter(points, x="x", y="y", color=label_column, hover_data=["sample_id"], height=480)
            event = st.plotly_chart(
                figure, key=f"{domain}_map", on_select="rerun", selection_mode=("points", "box", "lasso")
            )
            selected = getattr(getattr(event, "selection", None), "point_indices", None) or []
            selection_ids = points.iloc[list(selected)]["sample_id"].tolist() if selected else []
        if selection_ids:
            st.write(f"{len(selection_ids)} selected")
            st.dataframe(samples[samples["sample_id"].isin(selection_ids)], hide_index=True, width="stretch")
    with right:
        st.subheader("Nearest neighbours")
        search = st.text_input("Filter sample ids", key=f"{domain}_search")
        candidates = points["sample_id"].tolist() if not points.empty else samples["sample_id"].tolist()
        if search:
            candidates = [c for c in candidates if search.lower() in str(c).lower()]
        if not candidates:
            st.info("No sample matches.")
            return
        sample_id = st.selectbox("Sample", candidates[:5000], key=f"{domain}_sample")
        k = st.slider("k", 1, 50, 10, key=f"{domain}_k")
        neighbours = nearest(
            sample_id=sample_id,
            k=k,
            domain=domain,
            modality=chosen["modality"],
            model_name=chosen["model_name"],
            model_version=chosen["model_version"],
        )
        st.dataframe(neighbours[["rank", "sample_id", "score"]], hide_index=True, width="stretch")
        st.subheader("Detail")
        detail = samples[samples["sample_id"] == sample_id]
        if not detail.empty:
            # pandas turns numpy scalars into JSON numbers and NaN into null.
            st.json(json.loads(detail.iloc[:1].to_json(orient="records", date_format="iso"))[0])
        meta = query(
            f"SELECT meta FROM embeddings_{int(chosen['dim'])} WHERE sample_id = ? AND domain = ? "  # noqa: S608
            "AND modality = ? AND model_name = ? AND model_version = ?",
            [sample_id, domain, chosen["modality"], chosen["model_name"], chosen["model_version"]],
        )
        if not meta.empty and meta.iloc[0]["meta"]:
            st.json(json.loads(meta.iloc[0]["meta"]))
