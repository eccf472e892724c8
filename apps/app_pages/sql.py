"""Explorer SQL page: read-only SELECT queries over the store, results as a table and a CSV download."""

from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

from apps.store_access import RejectedQuery, run_user_sql, store_path

st.title("SQL over the embedding store")
st.caption("Read-only: one SELECT at a time, on a locked-down connection (no file access, no extensions).")
if not store_path().is_file():
    st.warning("No embedding store yet. Run `make demo` first.")
    st.stop()

readme = Path(__file__).resolve().parents[2] / "docs" / "store.md"
examples = re.findall(r"```sql\n(.*?)```", readme.read_text(encoding="utf-8"), flags=re.DOTALL)
choice = st.selectbox(
    "Example queries (from docs/store.md)", ["(write your own)"] + [e.split("\n")[0] for e in examples]
)
default = examples[[e.split("\n")[0] for e in examples].index(choice)] if choice != "(write your own)" else ""
text = st.text_area("Query", value=default or "SELECT * FROM embedding_inventory", height=200, key="sql_text")
if st.button("Run", type="primary"):
    try:
        frame = run_user_sql(text)
    except RejectedQuery as error:
        st.error(f"Not run: {error}")
    except Exception as error:  # DuckDB binder/catalog errors: show the message, not a traceback
        st.error(f"Query failed: {type(error).__name__}: {error}")
    else:
        st.success(f"{len(frame)} rows")
        st.dataframe(frame, hide_index=True, width="stretch")
        st.download_button("Download CSV", frame.to_csv(index=False).encode("utf-8"), "query.csv", "text/csv")
