"""The explorer: ``streamlit run apps/explorer.py``. One multipage app over the embedding store."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

# Streamlit runs this file as a script; make the repository importable when it is not installed.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from shared.quiet_output import silence_library_chatter  # noqa: E402 — after the path set-up above

PAGES_DIR = Path(__file__).parent / "app_pages"

silence_library_chatter()  # model loading in the pages: no library tables or weight bars in the server log
st.set_page_config(page_title="Domain CLIP explorer", layout="wide")
navigation = st.navigation(
    [
        st.Page(PAGES_DIR / "home.py", title="Home", default=True),
        st.Page(PAGES_DIR / "biomed.py", title="Biomed"),
        st.Page(PAGES_DIR / "astro.py", title="Astro"),
        st.Page(PAGES_DIR / "news.py", title="News"),
        st.Page(PAGES_DIR / "recsys.py", title="Recsys"),
        st.Page(PAGES_DIR / "sql.py", title="SQL"),
    ],
    position="sidebar",
)
navigation.run()
