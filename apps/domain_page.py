"""The per-domain explorer page: pick a model and a sample, see neighbours, a 2-D map and details.

Every identifier (domain, table) comes from an allowlist built from the store's own catalogue; every value
reaches SQL as a bound parameter.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from apps.run_artifacts import runs_root, training_curves
from apps.shard_media import IMAGE_COLUMN_CONFIG
from apps.store_access import nearest, query, store_path

GROUP_MODELS_ABOVE = 8
"""With more models than this in a domain, the picker groups versions under their model."""
MAP_POINTS = 5000
"""Points drawn on a map at most; larger models are drawn from a repeatable uniform sample."""


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
def map_points(
    store: str, domain: str, modality: str, model_name: str, model_version: str, dim: int, method: str = "PCA"
) -> tuple[pd.DataFrame, int]:
    """A 2-D map (PCA or UMAP) of at most :data:`MAP_POINTS` vectors of one model, and the model's vector count.

    Larger models are drawn from a repeatable uniform sample, so the page stays responsive at any size
    (the density view beside the map shows where the sampled points pile up).
    """
    table = f"embeddings_{int(dim)}"
    identity = [domain, modality, model_name, model_version]
    where = "WHERE domain = ? AND modality = ? AND model_name = ? AND model_version = ?"
    total = int(query(f"SELECT count(*) AS n FROM {table} {where}", identity)["n"].iloc[0])  # noqa: S608
    if total > MAP_POINTS:
        sql = (
            f"SELECT sample_id, vec FROM (SELECT sample_id, vec FROM {table} {where}) "  # noqa: S608
            f"USING SAMPLE reservoir({MAP_POINTS} ROWS) REPEATABLE (7) ORDER BY sample_id"
        )
        frame = query(sql, identity)
    else:
        frame = query(f"SELECT sample_id, vec FROM {table} {where} ORDER BY sample_id", identity)  # noqa: S608
    if frame.empty:
        return pd.DataFrame(columns=["sample_id", "x", "y"]), total
    vectors = np.stack(frame["vec"].to_numpy()).astype(np.float32)
    coordinates = project_2d(vectors, method)
    return pd.DataFrame({"sample_id": frame["sample_id"], "x": coordinates[:, 0], "y": coordinates[:, 1]}), total


def project_2d(vectors: np.ndarray, method: str) -> np.ndarray:
    """(N, 2) coordinates: PCA (first two principal components) or UMAP (cosine metric, fixed seed)."""
    if method == "UMAP" and len(vectors) >= 8:
        import umap

        # Seeded, hence one thread (umap-learn would override n_jobs and warn).
        reducer = umap.UMAP(
            n_components=2, metric="cosine", n_neighbors=min(15, len(vectors) - 1), random_state=0, n_jobs=1
        )
        return np.asarray(reducer.fit_transform(vectors), dtype=np.float32)
    centred = vectors - vectors.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    coordinates = centred @ components[:2].T
    if coordinates.shape[1] < 2:  # a 1-D model: put everything on a line
        coordinates = np.column_stack([coordinates, np.zeros(len(coordinates))])
    return coordinates


def colour_columns(samples: pd.DataFrame) -> list[str]:
    """Sample columns a map can be coloured by: any column with at most 40 distinct values, plus numeric scores."""
    usable = []
    for column in samples.columns:
        if column == "sample_id":
            continue
        distinct = samples[column].nunique(dropna=True)
        if 1 <= distinct <= 40 or (pd.api.types.is_numeric_dtype(samples[column]) and distinct > 1):
            usable.append(column)
    preferred = [c for c in ("label", "concept", "genre", "class", "split", "image_set") if c in usable]
    return preferred + [c for c in usable if c not in preferred]


HOVER_COLUMNS = ("caption", "title", "text", "asassn_name", "label", "concept")


def map_figure(points: pd.DataFrame, colour: str | None, hover: list[str]):
    """The scatter map: box-select by default, translucent points, the rarest classes drawn last (on top)."""
    if colour and not pd.api.types.is_numeric_dtype(points[colour]):
        points = points.copy()
        points[colour] = points[colour].astype(str)
        sizes = points[colour].value_counts()
        points = points.iloc[np.argsort(-points[colour].map(sizes).to_numpy(), kind="stable")]
    figure = px.scatter(points, x="x", y="y", color=colour, hover_data=["sample_id", *hover], height=480, opacity=0.7)
    figure.update_traces(marker={"size": 7, "line": {"width": 0.5, "color": "white"}})
    figure.update_layout(dragmode="select", clickmode="event+select", legend={"itemsizing": "constant"})
    return figure, points


def selected_sample_ids(event: Any, shown: pd.DataFrame) -> list[str]:
    """Sample ids of the points clicked or box/lasso-selected on the map (from plotly's custom data)."""
    selection = getattr(event, "selection", None) or {}
    points = selection.get("points", []) if isinstance(selection, dict) else getattr(selection, "points", [])
    ids = []
    for point in points or []:
        custom = point.get("customdata") if isinstance(point, dict) else None
        if custom:
            ids.append(str(custom[0]))
    if not ids:
        indices = selection.get("point_indices", []) if isinstance(selection, dict) else []
        ids = [str(shown.iloc[i]["sample_id"]) for i in indices if i < len(shown)]
    return list(dict.fromkeys(ids))


def follow_map_selection(domain: str, selection_ids: list[str], targets: Sequence[str]) -> None:
    """When the map selection changes, point the page's sample pickers (``targets``: widget keys) at its first sample."""
    key = f"{domain}_last_map_selection"
    if selection_ids and st.session_state.get(key) != selection_ids:
        st.session_state[key] = selection_ids
        for target in targets:
            st.session_state[target] = selection_ids[0]


def render_domain_page(
    domain: str,
    thumbnails: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    image_of: Callable[[str], Any] | None = None,
    sample_columns_for_display: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    also_follow: Sequence[str] = (),
) -> list[str]:
    """Draw the page for ``domain``: model picker, linked map, neighbours and the detail of one sample.

    Clicking a point or selecting a box on the map opens that sample (detail and neighbours, and any
    pickers named in ``also_follow``, e.g. the astro star picker).

    Args:
        domain: One of the suite's four domains.
        thumbnails: Adds an ``image`` column of thumbnail URLs to a table with ``sample_id`` (pictures).
        image_of: The full picture of one sample (for the detail view), or None when it has none.
        sample_columns_for_display: Derives extra display columns (e.g. recsys's genre) from the sample table.
        also_follow: Further widget keys set to the first selected sample when the map selection changes.

    Returns:
        The sample ids selected on the map (empty when none).
    """
    if domain not in ("biomed", "astro", "news", "recsys"):
        raise ValueError(f"unknown domain {domain!r}")
    st.title(f"{domain.capitalize()} embeddings")
    if not store_path().is_file():
        st.warning("No embedding store yet. Run `make demo` first.")
        return []
    models = inventory(domain)
    if models.empty:
        st.info(f"The store has no {domain} embeddings yet. Run `python -m domains.{domain}.embed`.")
        return []
    models["label"] = models["modality"] + " · " + models["model_name"] + " " + models["model_version"]
    models["family"] = models["modality"] + " · " + models["model_name"]
    pick, method_column = st.columns([4, 1])
    if len(models) > GROUP_MODELS_ABOVE:
        # Many variants (e.g. MNAR estimators x seeds): pick the model first, then its version.
        families = models.groupby("family", sort=False).size()
        family_labels = [f"{family} ({count} versions)" if count > 1 else family for family, count in families.items()]
        family = pick.selectbox("Modality and model", family_labels, key=f"{domain}_family")
        models_shown = models[models["family"] == families.index[family_labels.index(family)]]
    else:
        models_shown = models
    choice = pick.selectbox(
        "Version" if len(models) > GROUP_MODELS_ABOVE else "Modality and model",
        models_shown["label"].tolist(),
        key=f"{domain}_model",
    )
    method = method_column.radio("Map", ["PCA", "UMAP"], horizontal=True, key=f"{domain}_map_method")
    chosen = models[models["label"] == choice].iloc[0]

    samples = sample_table(domain)
    if sample_columns_for_display is not None:
        samples = sample_columns_for_display(samples)
    points, total = map_points(
        store_key(), domain, chosen["modality"], chosen["model_name"], chosen["model_version"], int(chosen["dim"]),
        method,
    )  # fmt: skip
    shown_note = f" — map shows a uniform sample of {len(points):,}" if total > len(points) else ""
    st.caption(f"{int(chosen['num_vectors']):,} vectors of dimension {int(chosen['dim'])}{shown_note}")
    colours = colour_columns(samples)
    hover = [c for c in HOVER_COLUMNS if c in samples.columns]
    if not points.empty:
        extra = [c for c in dict.fromkeys([*colours, *hover]) if c in samples.columns]
        points = points.merge(samples[["sample_id", *extra]], on="sample_id", how="left")

    left, right = st.columns([3, 2])
    selection_ids: list[str] = []
    with left:
        st.subheader(f"Map ({method})")
        if points.empty:
            st.info("No vectors to map.")
        else:
            colour = st.selectbox("Colour by", [*colours, "(none)"], key=f"{domain}_colour") if colours else None
            colour = None if colour in (None, "(none)") else colour
            figure, drawn = map_figure(points, colour, hover)
            event = st.plotly_chart(
                figure, key=f"{domain}_map", on_select="rerun", selection_mode=("points", "box", "lasso")
            )
            selection_ids = selected_sample_ids(event, drawn)
            st.caption(
                "Drag a box (or lasso) around points to open them. To open one point with a click, pick the pan "
                "tool in the chart's toolbar first (in box-select mode Streamlit leaves single clicks to the box). "
                "The rarest classes are drawn on top."
            )
            if total > len(points):
                st.plotly_chart(
                    px.density_heatmap(points, x="x", y="y", nbinsx=60, nbinsy=60, height=260, title="Density"),
                    key=f"{domain}_density",
                )
        if selection_ids:
            st.write(f"{len(selection_ids)} selected")
            chosen_rows = samples[samples["sample_id"].isin(selection_ids)]
            if thumbnails is not None:
                chosen_rows = thumbnails(chosen_rows)
            st.dataframe(
                chosen_rows, hide_index=True, width="stretch", column_config=IMAGE_COLUMN_CONFIG,
                key=f"{domain}_selection",
            )  # fmt: skip
    follow_map_selection(domain, selection_ids, [f"{domain}_sample", *also_follow])
    with right:
        st.subheader("Nearest neighbours")
        search = st.text_input("Filter sample ids", key=f"{domain}_search")
        candidates = points["sample_id"].tolist() if not points.empty else samples["sample_id"].tolist()
        if search:
            candidates = [c for c in candidates if search.lower() in str(c).lower()]
        current = st.session_state.get(f"{domain}_sample")
        if current is not None and current not in candidates and current in set(samples["sample_id"]):
            candidates = [current, *candidates]  # a selected sample outside the drawn sample stays pickable
        if not candidates:
            st.info("No sample matches.")
            return selection_ids
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
        described = [c for c in ("caption", "title", "text", "label", "concept", "genre") if c in samples.columns]
        table = neighbours[["rank", "sample_id", "score"]].merge(
            samples[["sample_id", *described]], on="sample_id", how="left"
        )
        if thumbnails is not None:
            table = thumbnails(table)
        st.dataframe(
            table, hide_index=True, width="stretch", column_config=IMAGE_COLUMN_CONFIG, key=f"{domain}_neighbours"
        )
        st.subheader("Detail")
        picture = image_of(sample_id) if image_of is not None else None
        if picture is not None:
            st.image(picture, caption=sample_id, width=224)
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
    return selection_ids


def render_training_curves(domain: str, commands: Sequence[str] | None = None) -> None:
    """Training curves of the domain's finished runs, from their ``metrics.csv`` (one chart per metric)."""
    from shared.run_folder import finished_runs

    st.subheader("Training curves")
    folders = [
        folder.path
        for folder in finished_runs(runs_root(), domain)
        if (folder.path / "metrics.csv").is_file() and (commands is None or folder.marker().get("command") in commands)
    ]
    if not folders:
        st.caption("No finished run with a metrics.csv beside the store.")
        return
    labels = [folder.relative_to(runs_root()).as_posix() for folder in folders]
    picked = st.selectbox("Run", labels, key=f"{domain}_curves_run")
    curves = training_curves(folders[labels.index(picked)])
    if curves.empty:
        st.caption("This run logged no metrics.")
        return
    names = sorted(curves["metric"].unique())
    wanted = st.multiselect("Metrics", names, default=names[:4], key=f"{domain}_curves_metrics")
    shown = curves[curves["metric"].isin(wanted)]
    if shown.empty:
        return
    figure = px.line(
        shown, x="step", y="value", color="phase", facet_col="metric", facet_col_wrap=2, markers=True, height=320
    )
    figure.update_yaxes(matches=None, showticklabels=True)
    st.plotly_chart(figure, key=f"{domain}_curves")
