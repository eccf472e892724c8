"""Explorer page: recommendations — a user's history, top-N with and without augmentation, similar items."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import streamlit as st

from apps.domain_page import inventory, render_domain_page, render_training_curves
from apps.run_artifacts import (
    RECSYS_TRAIN_COMMAND,
    finished_run_folders,
    finished_subrun,
    recsys_run,
    runs_root,
)
from apps.store_access import nearest, query, store_path

RECOMMENDER_MODEL = "llmrec-lightgcn"
MNAR_COMMAND = "domains.recsys.mnar"


def user_history(loaded, user: str) -> pd.DataFrame:
    """Every interaction of ``user`` in the run's data, with the split it belongs to and the item title."""
    data = loaded.data
    index = data.user_index()[user]
    rows = []
    for split, pairs in (("train", data.train), ("val", data.val), ("test", data.test)):
        for item in pairs[pairs[:, 0] == index][:, 1]:
            rows.append((data.item_ids[item], data.item_titles[item], split))
    return pd.DataFrame(rows, columns=["item_id", "title", "split"])


def recommendations(run_dir: str, user: str, top_n: int) -> pd.DataFrame:
    """Top-N unseen items of a run for one user (recsys's library ``recommend``)."""
    from domains.recsys.llmrec.recommendations import recommend

    return recommend(recsys_run(run_dir), [user], top_n)[["rank", "item_id", "title", "score"]]


def with_genre(samples: pd.DataFrame) -> pd.DataFrame:
    """The recsys sample table with a ``genre`` column (the first genre of an item's text), to colour maps by."""
    if "text" not in samples.columns or samples.empty:
        return samples
    samples = samples.copy()
    genres = samples["text"].astype(str).str.extract(r"genres?:\s*([^;,|]+)", expand=False).str.strip()
    samples["genre"] = genres.where(genres.notna(), samples.get("kind", "unknown"))
    return samples


def mnar_results() -> list[tuple[str, str]]:
    """``(run, results.md)`` of every finished MNAR experiment (Rel-MF and the other estimators) beside the store."""
    folders = finished_run_folders("recsys", MNAR_COMMAND)
    return [
        (folder.relative_to(runs_root()).as_posix(), (folder / "results.md").read_text(encoding="utf-8"))
        for folder in folders
        if (folder / "results.md").is_file()
    ]


render_domain_page("recsys", sample_columns_for_display=with_genre)
st.divider()
st.header("Unbiased learning from MNAR feedback")
results = mnar_results()
if not results:
    st.caption(
        "No finished MNAR experiment beside the store. Run `python -m domains.recsys.mnar --config "
        "domains/recsys/configs/mnar_quick.yaml`."
    )
else:
    run_names = [name for name, _ in results]
    picked_run = st.selectbox("MNAR experiment", run_names, key="recsys_mnar_run")
    st.markdown(results[run_names.index(picked_run)][1])
if store_path().is_file() and not inventory("recsys").empty:
    st.divider()
    st.header("Users and recommendations")
    run_ids = query("SELECT DISTINCT run_id FROM runs WHERE domain = 'recsys'")["run_id"].tolist()
    folders = finished_run_folders("recsys", RECSYS_TRAIN_COMMAND, prefer=run_ids)
    augmented = [f for f in folders if f.name != "base"]
    if not augmented:
        st.info("No trained recommender beside the store (runs/recsys/<run>). Run `python -m domains.recsys.train`.")
        st.stop()
    run_dir = st.selectbox("Run (with augmentation)", [str(f) for f in augmented], key="recsys_run")
    base_run = finished_subrun(run_dir, "base")  # the same recipe without augmentation
    base_dir = str(base_run) if base_run is not None else None
    loaded = recsys_run(run_dir)
    user = st.selectbox("User", loaded.data.user_ids, key="recsys_user")
    top_n = st.slider("Top N", 5, 50, 10, key="recsys_top_n")
    history_column, with_column, without_column = st.columns(3)
    with history_column:
        st.subheader("History")
        history = user_history(loaded, user)
        st.caption(f"{len(history)} interactions")
        st.dataframe(history, hide_index=True, width="stretch", key="recsys_history")
    with with_column:
        st.subheader("With augmentation")
        augmented_top = recommendations(run_dir, user, top_n)
        st.dataframe(augmented_top, hide_index=True, width="stretch", key="recsys_with")
    with without_column:
        st.subheader("Without augmentation")
        if base_dir is None:
            st.info("This run has no base model (<run>/base), so there is nothing to compare with.")
        else:
            base_top = recommendations(base_dir, user, top_n)
            st.dataframe(base_top, hide_index=True, width="stretch", key="recsys_without")
            shared_items = len(set(base_top["item_id"]) & set(augmented_top["item_id"]))
            st.caption(f"{shared_items} of {top_n} items in both lists")

    st.subheader("Similar items")
    data = loaded.data
    item_labels = [f"{title} ({raw})" for raw, title in zip(data.item_ids, data.item_titles)]
    picked = st.selectbox("Item", item_labels, key="recsys_item")
    item_id = data.item_ids[item_labels.index(picked)]
    models = inventory("recsys")
    item_models = models[(models["modality"] == "item") & (models["model_name"] == RECOMMENDER_MODEL)]
    if item_models.empty:
        st.info("No recommender item vectors in the store yet. Run `python -m domains.recsys.embed`.")
    else:
        # The store's version of a recommender is the first 12 hex digits of its weights' SHA-256.
        own_version = hashlib.sha256((Path(run_dir) / "model.safetensors").read_bytes()).hexdigest()[:12]
        versions = item_models["model_version"].tolist()
        version = own_version if own_version in versions else versions[0]
        if version != own_version:
            st.caption(f"The store has no vectors of this run's weights; showing model version {version}.")
        similar = nearest(
            sample_id=f"{data.name}:item:{item_id}", k=10, domain="recsys", modality="item",
            model_name=RECOMMENDER_MODEL, model_version=version, include_sample_columns=True,
        )  # fmt: skip
        columns = ["rank"] + [c for c in ("sample_title",) if c in similar.columns] + ["score", "sample_id"]
        st.dataframe(similar[columns], hide_index=True, width="stretch", key="recsys_similar")
    st.divider()
    render_training_curves("recsys")
