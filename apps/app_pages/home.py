"""Explorer home: what is in the store."""

from __future__ import annotations

import streamlit as st

from apps.run_artifacts import finished_run_table, headline_metrics
from apps.store_access import query, store_path

st.title("Domain CLIP explorer")
path = store_path()
if not path.is_file():
    st.warning(f"No embedding store at `{path}` yet. Run `make demo` (or a domain's `embed` command) first.")
    st.stop()

inventory = query(
    "SELECT domain, modality, model_name, model_version, dim, num_vectors, num_runs, last_written "
    "FROM embedding_inventory ORDER BY domain, modality, model_name"
)
runs = query("SELECT run_id, domain, model_name, model_version, git_sha, created_at FROM runs ORDER BY created_at DESC")
columns = st.columns(4)
columns[0].metric("Domains", inventory["domain"].nunique() if len(inventory) else 0)
columns[1].metric(
    "Models", inventory[["model_name", "model_version"]].drop_duplicates().shape[0] if len(inventory) else 0
)
columns[2].metric("Vectors", int(inventory["num_vectors"].sum()) if len(inventory) else 0)
columns[3].metric("Runs", len(runs))
st.caption(f"Store: `{path}` — last update {inventory['last_written'].max() if len(inventory) else 'never'}")
st.subheader("Headline metrics of the finished runs")
headlines = headline_metrics()
if headlines.empty:
    st.caption("No finished run with a summary beside the store.")
else:
    # One row per domain: its newest finished run's numbers (run.json summary), metrics as columns.
    newest = headlines.groupby("domain", sort=False)["run"].first()
    latest = headlines[headlines["run"].isin(newest.to_numpy())]
    table = latest.pivot_table(index=["domain", "run"], columns="metric", values="value", aggfunc="first", sort=False)
    st.dataframe(table.reset_index(), hide_index=True, width="stretch", key="home_latest_headlines")
    with st.expander("Every run's headline metrics"):
        st.dataframe(headlines, hide_index=True, width="stretch", key="home_headlines")
st.subheader("Embeddings by domain, modality and model")
st.dataframe(inventory, hide_index=True, width="stretch")
st.subheader("Runs")
st.dataframe(runs, hide_index=True, width="stretch")
st.subheader("Finished runs beside the store")
finished = finished_run_table()
if finished.empty:
    st.caption("No finished run folders beside the store (a run is finished once its command wrote run.json).")
else:
    st.dataframe(finished, hide_index=True, width="stretch", key="home_finished_runs")
st.subheader("Pages")
for page, label in [
    ("app_pages/biomed.py", "Biomed: images and captions"),
    ("app_pages/astro.py", "Astro: variable stars"),
    ("app_pages/news.py", "News: posts and fake-news scores"),
    ("app_pages/recsys.py", "Recsys: users and items"),
    ("app_pages/sql.py", "SQL: read-only queries"),
]:
    st.page_link(page, label=label)
