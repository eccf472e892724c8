"""Explorer SQL page: read-only SELECT queries over the store, results as a table and a CSV download."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from apps.sql_examples import EXAMPLES
from apps.store_access import (
    MAX_SQL_ROWS,
    SQL_MEMORY_LIMIT,
    SQL_TIMEOUT_S,
    QueryBounded,
    RejectedQuery,
    run_user_sql,
    schema_overview,
    store_path,
)

st.title("SQL over the embedding store")
st.caption("Read-only: one SELECT at a time, on a locked-down connection (no file access, no extensions).")
if not store_path().is_file():
    st.warning("No embedding store yet. Run `make demo` first.")
    st.stop()


def fill_query_box() -> None:
    """Picking an example puts its SQL into the query box (the box keeps whatever the user types after)."""
    title = st.session_state.get("sql_example")
    example = next((e for e in EXAMPLES if e.title == title), None)
    if example is not None:
        st.session_state["sql_text"] = example.sql


st.session_state.setdefault("sql_text", EXAMPLES[0].sql)
editor, schema = st.columns([3, 2])
with schema:
    st.subheader("Schema")
    overview = schema_overview()
    st.dataframe(overview[["name", "kind", "rows"]], hide_index=True, width="stretch", key="sql_schema")
    for row in overview.itertuples():
        with st.expander(f"{row.name} ({row.kind}{'' if pd.isna(row.rows) else f', {int(row.rows):,} rows'})"):
            st.code("\n".join(row.columns.split(", ")), language=None)
with editor:
    st.selectbox(
        "Example queries (each runs as shown on the demo store)",
        [e.title for e in EXAMPLES],
        index=None,
        placeholder="Pick an example to load it into the query box",
        key="sql_example",
        on_change=fill_query_box,
    )
    text = st.text_area("Query", height=260, key="sql_text")
    st.caption(
        f"Bounds: at most {MAX_SQL_ROWS:,} rows are fetched, a query is interrupted after {SQL_TIMEOUT_S:g} s, "
        f"and may use {SQL_MEMORY_LIMIT} of memory."
    )
    if st.button("Run", type="primary"):
        try:
            result = run_user_sql(text)
        except RejectedQuery as error:
            st.error(f"Not run: {error}")
        except QueryBounded as error:
            st.error(f"Query {error}")
        except Exception as error:  # DuckDB binder/catalog errors: show the message, not a traceback
            st.error(f"Query failed: {type(error).__name__}: {error}")
        else:
            frame = result.frame
            if result.truncated:
                st.warning(
                    f"Showing the first {MAX_SQL_ROWS:,} rows: the result has more (the page fetches at most "
                    f"{MAX_SQL_ROWS:,}). Add a LIMIT or aggregate to see the rest."
                )
            st.success(f"{len(frame)} rows")
            st.caption(f"ran in {result.seconds:.2f} s")
            st.dataframe(frame, hide_index=True, width="stretch", key="sql_result")
            st.download_button("Download CSV", frame.to_csv(index=False).encode("utf-8"), "query.csv", "text/csv")
