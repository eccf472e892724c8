"""Explorer page: variable stars — pick or search a star, light curve (raw and folded), spectrum,
neighbours per modality, anomaly ranking, and the class-coloured map with linked selection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from apps.domain_page import inventory, render_domain_page, render_training_curves, sample_table
from apps.run_artifacts import ASTRO_INGEST_COMMAND, finished_run_folders, runs_root
from apps.store_access import nearest, query, store_path

ANOMALY_COLUMNS = ("anomaly_isolation_forest", "anomaly_lof", "misclassification_flags")
MODALITY_ORDER = ("photometry", "spectra", "metadata", "fused")


def ingest_sources(run_config: dict) -> dict[str, str] | None:
    """Raw-file locations (catalogue, light curves, spectra) of the ingest a pretraining run read.

    The finished ``domains.astro.ingest`` run whose folder the run's config names (any path in it), else
    the built-in demo ingest beside the store; the paths come from that run's ``ingest_report.json``.
    None when no such finished ingest run is there.
    """
    from domains.astro.ingest_pipeline import DEMO_INGEST_RUN

    ingests = {folder.resolve(): folder for folder in finished_run_folders("astro", ASTRO_INGEST_COMMAND)}
    named = [ingests.get(_resolved(value)) for value in _string_values(run_config)]
    folder = next((path for path in named if path is not None), None)
    if folder is None:
        stars = int(run_config.get("demo_stars", 2000))
        demo = runs_root() / "astro" / (DEMO_INGEST_RUN if stars == 2000 else f"{DEMO_INGEST_RUN}-{stars}")
        folder = ingests.get(demo.resolve())
    report = folder / "ingest_report.json" if folder is not None else None
    if report is None or not report.is_file():
        return None
    sources = json.loads(report.read_text(encoding="utf-8")).get("sources")
    return sources if isinstance(sources, dict) and "catalogue" in sources else None


def _string_values(config: object) -> list[str]:
    """Every non-empty string in a (nested) config, depth first."""
    if isinstance(config, dict):
        return [text for value in config.values() for text in _string_values(value)]
    if isinstance(config, list):
        return [text for value in config for text in _string_values(value)]
    return [config] if isinstance(config, str) and config else []


def _resolved(path: str) -> Path:
    """A config path made absolute: relative ones are relative to the folder that holds ``runs/``."""
    return (Path(path) if Path(path).is_absolute() else runs_root().parent / path).resolve()


@st.cache_data(show_spinner=False, max_entries=4)
def catalogue_rows(catalogue: str) -> pd.DataFrame:
    """Name, id, class and period of every catalogue star (astro's own catalogue reader)."""
    from domains.astro.catalogue import read_asassn_catalogue

    frame = read_asassn_catalogue(catalogue)
    frame = frame.dropna(subset=["edr3_source_id"])
    frame["sample_id"] = frame["edr3_source_id"].astype("int64").astype(str)
    return frame[["sample_id", "asassn_name", "variable_type", "period", "amplitude"]]


@st.cache_data(show_spinner=False, max_entries=4)
def spectrum_files(spectrum_index: str) -> dict[str, str]:
    """Gaia EDR3 id → spectrum file name (astro's own index reader)."""
    from domains.astro.catalogue import read_spectrum_index

    frame = read_spectrum_index(spectrum_index).dropna(subset=["edr3_source_id"])
    return dict(zip(frame["edr3_source_id"].astype("int64").astype(str), frame["spec_filename"].astype(str)))


def light_curve_figures(path: Path, period_days: float | None):
    """Raw and phase-folded light-curve figures (astropy's ``TimeSeries.fold``)."""
    import astropy.units as u

    from domains.astro.lightcurve_readers import read_asassn_lightcurve

    series = read_asassn_lightcurve(path)
    flux = np.asarray(series["flux"].value)
    flux_err = np.asarray(series["flux_err"].value) if "flux_err" in series.colnames else None
    # Calendar dates on the axis (HJD as a number reads "2.456M"); the HJD stays in the hover.
    raw = pd.DataFrame({"date": series.time.to_datetime(), "HJD": series.time.jd, "flux_mJy": flux})
    if flux_err is not None:
        raw["flux_err_mJy"] = flux_err
    error = "flux_err_mJy" if flux_err is not None else None
    raw_figure = px.scatter(
        raw, x="date", y="flux_mJy", error_y=error, hover_data=["HJD"], title="Light curve", height=300,
        labels={"date": "date (UTC)", "flux_mJy": "flux (mJy)"},
    )  # fmt: skip
    raw_figure.update_xaxes(tickformat="%Y-%m-%d")
    raw_figure.update_traces(marker={"size": 4}, error_y={"thickness": 0.8, "width": 0})
    folded_figure = None
    if period_days and np.isfinite(period_days) and period_days > 0:
        folded = series.fold(period=period_days * u.day, normalize_phase=True)
        frame = pd.DataFrame({"phase": np.asarray(folded.time.value), "flux_mJy": np.asarray(folded["flux"].value)})
        if flux_err is not None:
            frame["flux_err_mJy"] = np.asarray(folded["flux_err"].value)
        folded_figure = px.scatter(
            frame, x="phase", y="flux_mJy", error_y=error, title=f"Folded at P = {period_days:.5f} d", height=300,
            labels={"flux_mJy": "flux (mJy)"},
        )  # fmt: skip
        folded_figure.update_traces(marker={"size": 4}, error_y={"thickness": 0.8, "width": 0})
    return raw_figure, folded_figure


def spectrum_figure(path: Path):
    """Flux against wavelength (Å) of a LAMOST spectrum (astro's reader, either FITS layout)."""
    from domains.astro.spectrum_readers import read_lamost_spectrum

    spectrum = read_lamost_spectrum(path)
    frame = pd.DataFrame({"wavelength_A": spectrum.wavelength.to_value("Angstrom"), "flux": spectrum.flux})
    return px.line(
        frame, x="wavelength_A", y="flux", title="Spectrum", height=300, labels={"wavelength_A": "wavelength (Å)"}
    )


render_domain_page("astro", also_follow=["astro_star"])  # a map click opens the star below too
models = inventory("astro") if store_path().is_file() else pd.DataFrame()
if not models.empty:
    st.divider()
    st.header("Stars")
    samples = sample_table("astro")
    versions = models[["model_name", "model_version"]].drop_duplicates()
    labels = (versions["model_name"] + " " + versions["model_version"]).tolist()
    picked = versions.iloc[labels.index(st.selectbox("Model", labels, key="astro_star_model"))]
    run_rows = query(
        "SELECT config_json FROM runs WHERE domain = 'astro' AND model_name = ? AND model_version = ? "
        "ORDER BY created_at DESC LIMIT 1",
        [picked["model_name"], picked["model_version"]],
    )
    run_config = json.loads(run_rows.iloc[0]["config_json"]) if not run_rows.empty else {}
    sources = ingest_sources(run_config)
    catalogue = catalogue_rows(sources["catalogue"]) if sources else pd.DataFrame(columns=["sample_id"])

    classes = sorted(samples["label"].dropna().astype(str).unique()) if "label" in samples.columns else []
    chosen_classes = st.multiselect("Classes", classes, key="astro_classes")
    search = st.text_input("Search by Gaia id or ASAS-SN name", key="astro_star_search")
    stars = samples.merge(catalogue, on="sample_id", how="left") if not catalogue.empty else samples
    if chosen_classes:
        stars = stars[stars["label"].astype(str).isin(chosen_classes)]
    if search:
        needle = search.strip().lower()
        names = stars["asassn_name"].astype(str) if "asassn_name" in stars.columns else stars["sample_id"]
        stars = stars[
            stars["sample_id"].str.contains(needle, regex=False) | names.str.lower().str.contains(needle, regex=False)
        ]
    if stars.empty:
        st.info("No star matches.")
    else:
        star_id = st.selectbox("Star", stars["sample_id"].tolist()[:5000], key="astro_star")
        star = stars[stars["sample_id"] == star_id].iloc[0]
        name = str(star.get("asassn_name", "")) if "asassn_name" in stars.columns else ""
        period = float(star["period"]) if "period" in stars.columns and pd.notna(star.get("period")) else None
        st.caption(
            f"{name + ' · ' if name else ''}Gaia EDR3 {star_id} · class {star.get('label', '?')} · "
            f"period {f'{period:.5f} d' if period else 'n/a'}"
        )
        if sources is None:
            st.info("The raw light curves and spectra of this run are not beside the store (no ingest report).")
        else:
            curve_column, spectrum_column = st.columns(2)
            with curve_column:
                curve = Path(sources["lightcurve_dir"]) / f"{name.replace(' ', '')}.dat"
                if name and curve.is_file():
                    raw_figure, folded_figure = light_curve_figures(curve, period)
                    st.plotly_chart(raw_figure, key="astro_raw_curve")
                    if folded_figure is not None:
                        st.plotly_chart(folded_figure, key="astro_folded_curve")
                else:
                    st.info("No light curve file for this star.")
            with spectrum_column:
                spectrum_name = spectrum_files(sources["spectrum_index"]).get(star_id)
                spectrum_path = Path(sources["spectrum_dir"]) / spectrum_name if spectrum_name else None
                if spectrum_path is not None and spectrum_path.is_file():
                    st.plotly_chart(spectrum_figure(spectrum_path), key="astro_spectrum")
                else:
                    st.info("No spectrum file for this star.")

        st.subheader("Nearest neighbours per modality")
        neighbour_count = st.slider("Neighbours", 3, 30, 10, key="astro_neighbour_k")
        present = set(models[(models["model_name"] == picked["model_name"])]["modality"])
        modalities = [m for m in MODALITY_ORDER if m in present]
        described = [c for c in ("asassn_name", "variable_type", "period") if c in catalogue.columns]
        for modality in modalities:
            hits = nearest(sample_id=star_id, k=neighbour_count, domain="astro", modality=modality,
                           model_name=picked["model_name"], model_version=picked["model_version"],
                           include_sample_columns=True)  # fmt: skip
            if described:
                hits = hits.merge(catalogue[["sample_id", *described]], on="sample_id", how="left")
            shown = ["rank", "sample_id", *described, "score"] + [
                c for c in ("sample_label", "sample_split", "sample_anomaly_isolation_forest") if c in hits.columns
            ]
            st.caption(f"{modality}: {len(hits)} nearest stars")
            st.dataframe(hits[shown], hide_index=True, width="stretch", key=f"astro_neighbours_{modality}")

    st.subheader("Anomaly ranking")
    scores = [c for c in ANOMALY_COLUMNS if c in samples.columns]
    if not scores:
        st.info("This store has no anomaly scores (run `python -m domains.astro.embed`).")
    else:
        score = st.selectbox("Score (higher = more unusual)", scores, key="astro_anomaly_score")
        shown = ["sample_id", "label", "split", score, "label_error_candidate"]
        ranking = samples.sort_values(score, ascending=False)[[c for c in shown if c in samples.columns]].head(50)
        st.dataframe(ranking, hide_index=True, width="stretch", key="astro_anomalies")
    st.divider()
    render_training_curves("astro")
