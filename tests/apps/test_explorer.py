"""AppTest runs of every explorer page against the store the domains' own demo commands filled."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from apps.store_access import RejectedQuery, check_read_only_sql
from shared.store import EmbeddingStore, open_readonly

APP = str(Path(__file__).resolve().parents[2] / "apps" / "explorer.py")
TIMEOUT_S = 120


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def app_at(page: str) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    app.run()
    if page != "home":
        app.switch_page(f"app_pages/{page}.py")
        app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def table_with(app: AppTest, *columns: str) -> pd.DataFrame:
    """The first table on the page that has all of ``columns``."""
    for element in app.dataframe:
        if set(columns) <= set(element.value.columns):
            return element.value
    raise AssertionError(f"no table with columns {columns}")


def tables_with(app: AppTest, *columns: str) -> list[pd.DataFrame]:
    """Every table on the page that has all of ``columns``, in page order."""
    return [element.value for element in app.dataframe if set(columns) <= set(element.value.columns)]


def rendered_text(app: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "json", "error", "info", "text") for e in getattr(app, kind)]
    parts += [d.value.to_csv() for d in app.dataframe]
    return "\n".join(str(p) for p in parts)


def store_sql(store: Path, sql: str, parameters: list | None = None) -> pd.DataFrame:
    connection = open_readonly(store)
    try:
        return connection.execute(sql, parameters or []).df()
    finally:
        connection.close()


def test_home_lists_the_store_contents(explorer_env: Path) -> None:
    app = app_at("home")
    inventory = store_sql(explorer_env, "SELECT * FROM embedding_inventory")
    runs = store_sql(explorer_env, "SELECT count(*) AS n FROM runs")["n"].iloc[0]
    expected = [
        str(inventory["domain"].nunique()),
        str(len(inventory[["model_name", "model_version"]].drop_duplicates())),
        str(int(inventory["num_vectors"].sum())),
        str(runs),
    ]
    assert [m.value for m in app.metric] == expected
    assert set(inventory["domain"]) == {"biomed", "astro", "news", "recsys"}


def test_home_lists_the_finished_runs_from_their_markers(explorer_env: Path) -> None:
    app = app_at("home")
    shown = table_with(app, "run", "command", "finished_at", "summary")
    runs = explorer_env.parent
    markers = {path.parent.relative_to(runs).as_posix(): path for path in runs.rglob("run.json")}
    assert sorted(shown["run"]) == sorted(markers)
    assert {"biomed/demo", "astro/ingest-demo", "astro/pretrain-demo", "news/demo", "recsys/demo",
            "recsys/demo/base"} <= set(shown["run"])  # fmt: skip
    for row in shown.itertuples():
        assert row.command == json.loads(markers[row.run].read_text())["command"]


@pytest.mark.parametrize("domain", ["biomed", "astro", "news", "recsys"])
def test_domain_page_shows_neighbours_of_the_chosen_sample(domain: str, explorer_env: Path) -> None:
    app = app_at(domain)
    model_box = app.selectbox(key=f"{domain}_model")
    modality, rest = model_box.value.split(" · ")
    sample_id = app.selectbox(key=f"{domain}_sample").options[3]
    app.selectbox(key=f"{domain}_sample").set_value(sample_id).run()
    assert not app.exception
    neighbours = table_with(app, "rank", "sample_id", "score")
    chosen = store_sql(
        explorer_env,
        "SELECT model_name, model_version FROM embedding_inventory WHERE domain = ? AND modality = ? "
        "AND model_name || ' ' || model_version = ?",
        [domain, modality, rest],
    ).iloc[0]
    # Independent computation: cosine over all of the model's vectors with numpy.
    store = EmbeddingStore(explorer_env)
    ids = store.sql(
        "SELECT sample_id FROM all_embeddings WHERE domain = ? AND modality = ? AND model_name = ? AND model_version = ?",
        [domain, modality, chosen["model_name"], chosen["model_version"]],
    )["sample_id"].tolist()
    vectors = store.get_vectors(ids, domain=domain, modality=modality, model_name=chosen["model_name"],
                                model_version=chosen["model_version"])  # fmt: skip
    store.close()
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = vectors @ vectors[ids.index(sample_id)]
    order = [ids[i] for i in np.argsort(-scores, kind="stable") if ids[i] != sample_id][: len(neighbours)]
    assert len(neighbours) == min(10, len(ids) - 1) and sample_id not in set(neighbours["sample_id"])
    np.testing.assert_allclose(neighbours["score"], np.sort(scores)[::-1][1 : len(neighbours) + 1], atol=1e-5)
    # Same ids, except that samples tied with the last one shown (duplicate posts) may swap places.
    boundary = float(neighbours["score"].iloc[-1])
    by_id = dict(zip(ids, scores, strict=True))
    assert all(abs(by_id[i] - boundary) < 1e-5 for i in set(neighbours["sample_id"]) - set(order))


def biomed_encoder(store: Path):
    from domains.biomed.model import load_model_for_inference

    return load_model_for_inference(f"local-dir:{store.parent / 'biomed' / 'demo' / 'export'}", "cpu")


def biomed_image_vectors(store: Path) -> tuple[list[str], np.ndarray]:
    reader = EmbeddingStore(store)
    ids = reader.sql(
        "SELECT sample_id FROM all_embeddings WHERE domain = 'biomed' AND modality = 'image' ORDER BY sample_id"
    )["sample_id"].tolist()
    vectors = reader.get_vectors(ids, domain="biomed", modality="image")
    reader.close()
    return ids, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_biomed_text_search_ranks_images_by_the_runs_own_text_encoder(explorer_env: Path) -> None:
    import torch

    app = app_at("biomed")
    app.text_input(key="biomed_text_query").set_value("a histology slide").run()
    assert not app.exception
    hits = tables_with(app, "rank", "sample_id", "score", "caption")[-1]  # after the map's neighbour table
    model, loaded = biomed_encoder(explorer_env)
    with torch.no_grad():
        query = model.encode("text", loaded.tokenizer(["a histology slide"])).numpy()[0]
    ids, vectors = biomed_image_vectors(explorer_env)
    scores = vectors @ query
    expected = [ids[i] for i in np.argsort(-scores, kind="stable")[: len(hits)]]
    assert hits["sample_id"].tolist() == expected
    np.testing.assert_allclose(hits["score"], np.sort(scores)[::-1][: len(hits)], atol=1e-4)
    assert hits["caption"].notna().all()


def test_biomed_image_upload_finds_neighbours_and_classifies(explorer_env: Path, shape_png: bytes) -> None:
    app = app_at("biomed")
    app.file_uploader(key="biomed_upload").set_value(("picture.png", shape_png, "image/png")).run()
    assert not app.exception and not app.error
    images = tables_with(app, "rank", "sample_id", "score", "caption")[1]  # [0]: the map's neighbour table
    assert len(images) == app.slider(key="biomed_query_k").value
    zero_shot = table_with(app, "label", "probability")
    assert sorted(zero_shot["label"]) == sorted(["chest radiograph", "histology slide", "retina photograph"])
    assert zero_shot["probability"].sum() == pytest.approx(1.0, abs=1e-3)
    assert zero_shot["probability"].is_monotonic_decreasing
    app.text_input(key="biomed_zero_shot_labels").set_value("only one").run()
    assert any("at least two labels" in i.value for i in app.info)


def test_biomed_dicom_upload_goes_through_the_chain_without_phi(explorer_env: Path, dicom_bytes: bytes) -> None:
    app = app_at("biomed")
    app.file_uploader(key="biomed_upload").set_value(("scan.dcm", dicom_bytes, "application/dicom")).run()
    assert not app.exception and not app.error
    text = rendered_text(app)
    from apps.upload_checks import decode_dicom

    assert f"DICOM caption: {decode_dicom(dicom_bytes).caption}" in text
    header = json.loads(app.json[-1].value)
    assert header["Modality"] == "CT" and "PatientName" not in header and "PatientID" not in header
    assert "Doe" not in text and "MRN0042424242" not in text
    assert len(table_with(app, "rank", "sample_id", "score", "caption")) > 0


@pytest.mark.parametrize(
    ("name", "payload", "reason"),
    [
        ("evil.png", b"<html><script>alert(1)</script></html>" * 10, "unrecognised content"),
        ("scan.dcm", b"\x00" * 128 + b"DICX" + b"\x00" * 64, "unrecognised content"),
        ("cut.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "cannot be decoded"),
        ("empty.jpg", b"", "empty"),
    ],
)
def test_biomed_refuses_spoofed_or_broken_uploads(explorer_env: Path, name: str, payload: bytes, reason: str) -> None:
    app = app_at("biomed")
    app.file_uploader(key="biomed_upload").set_value((name, payload, "image/png")).run()
    assert not app.exception
    assert len(app.error) == 1 and "Upload refused" in app.error[0].value and reason in app.error[0].value


def test_biomed_refuses_a_dicom_that_is_not_decodable(explorer_env: Path, dicom_bytes: bytes) -> None:
    app = app_at("biomed")
    truncated = dicom_bytes[: len(dicom_bytes) // 2]
    app.file_uploader(key="biomed_upload").set_value(("scan.dcm", truncated, "application/dicom")).run()
    assert not app.exception
    assert len(app.error) == 1 and "uploaded DICOM file" in app.error[0].value
    assert "explorer-upload-" not in app.error[0].value  # the temporary path is not shown


def test_news_detection_matches_the_detector_and_explains(explorer_env: Path, shape_png: bytes) -> None:
    from PIL import Image

    from domains.news.post_scoring import explain
    from domains.news.trained_detector import load_detector

    app = app_at("news")
    app.text_area(key="news_text").set_value("a red circle").run()
    app.file_uploader(key="news_image").set_value(("post.png", shape_png, "image/png")).run()
    assert not app.exception and not app.error
    shown = {m.label: m.value for m in app.metric}
    detector = load_detector(explorer_env.parent / "news" / "demo", "best")
    import io

    image = Image.open(io.BytesIO(shape_png)).convert("RGB")
    expected = explain(detector.model.branches, detector.predict(["a red circle"], [image], ["a red circle"]), 0)
    assert float(shown["Fake probability"]) == pytest.approx(expected["prob_fake"], abs=1e-3)
    assert shown["Verdict"] == expected["label"]
    assert float(shown["CLIP image–text similarity"]) == pytest.approx(expected["clip_similarity"], abs=1e-3)


def transparent_png() -> bytes:
    """A red circle on a fully transparent background (RGBA): dropping alpha turns the background black."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (48, 48), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((8, 8, 40, 40), fill=(220, 30, 30, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_news_explorer_and_cli_agree_on_a_png_with_alpha(explorer_env: Path, tmp_path: Path) -> None:
    """The page and ``domains.news.detect`` score the same post the same, transparency included."""
    from domains.news.post_scoring import DetectConfig, detect_posts

    data = transparent_png()
    image_path = tmp_path / "post.png"
    image_path.write_bytes(data)
    run = explorer_env.parent / "news" / "demo"
    cli = detect_posts(DetectConfig(run=str(run), text="a red circle", image=str(image_path), device="cpu")).results[0]
    app = app_at("news")
    app.text_area(key="news_text").set_value("a red circle").run()
    app.file_uploader(key="news_image").set_value(("post.png", data, "image/png")).run()
    assert not app.exception and not app.error
    shown = {m.label: m.value for m in app.metric}
    assert float(shown["Fake probability"]) == pytest.approx(cli["prob_fake"], abs=1e-3)
    assert float(shown["CLIP image–text similarity"]) == pytest.approx(cli["clip_similarity"], abs=1e-3)
    assert shown["Verdict"] == cli["label"]
    # The test ROC-AUC is shown beside the verdict, with a warning when near chance.
    auc = json.loads((run / "eval" / "metrics.json").read_text())["roc_auc"]
    assert shown["Test ROC-AUC"] == f"{auc:.3f}"
    if auc < 0.6:
        assert any("near chance" in w.value for w in app.warning)
    # Dropping the alpha channel (the old explorer path) would have scored a different picture.
    from PIL import Image

    from domains.news.trained_detector import load_detector

    detector = load_detector(run, "best")
    black = Image.open(io.BytesIO(data)).convert("RGB")
    dropped = detector.predict(["a red circle"], [black], ["a red circle"])
    assert abs(float(dropped["similarity"][0]) - cli["clip_similarity"]) > 1e-3


def test_news_page_shows_the_runs_roc_and_confusion_plots_and_post_pictures(explorer_env: Path) -> None:
    app = app_at("news")
    captions = [str(image.proto) for image in app.get("image")]
    assert any("roc" in text for text in captions) and any("confusion matrix" in text for text in captions)
    posts = table_with(app, "sample_id", "text", "prob_fake")
    assert "image" in posts.columns and posts["image"].str.startswith("data:image/png;base64,").all()
    # The detail view shows the chosen post's picture too (captioned with its id).
    assert any(f'caption: "{app.selectbox(key="news_sample").value}"' in text for text in captions)


def test_news_refuses_a_spoofed_image(explorer_env: Path, dicom_bytes: bytes) -> None:
    app = app_at("news")
    app.text_area(key="news_text").set_value("a red circle").run()
    app.file_uploader(key="news_image").set_value(("post.png", dicom_bytes, "image/png")).run()
    assert not app.exception and "Upload refused" in app.error[0].value and "dicom" in app.error[0].value


@pytest.mark.parametrize("attack", ["x' OR 1=1 --", "'; DROP TABLE samples_news; --", "%' UNION SELECT * FROM runs --"])
def test_news_browse_filters_bind_user_input(explorer_env: Path, attack: str) -> None:
    before = file_digest(explorer_env)
    app = app_at("news")
    posts = table_with(app, "sample_id", "text", "prob_fake")
    everything = store_sql(explorer_env, "SELECT count(*) AS n FROM samples_news")["n"].iloc[0]
    assert len(posts) == everything
    app.multiselect(key="news_filter_label").set_value(["fake"]).run()
    fake = tables_with(app, "sample_id", "text", "label")[-1]  # the browse table, after the map's tables
    assert len(fake) > 0 and set(fake["label"]) == {"fake"}
    app.text_input(key="news_contains").set_value(attack).run()
    assert not app.exception
    assert len(tables_with(app, "sample_id", "text", "label")[-1]) == 0
    assert file_digest(explorer_env) == before


def test_recsys_page_shows_history_and_both_recommendation_lists(explorer_env: Path) -> None:
    from domains.recsys.llmrec.recommendations import recommend
    from domains.recsys.llmrec.training import load_run

    app = app_at("recsys")
    user = app.selectbox(key="recsys_user").options[2]
    app.selectbox(key="recsys_user").set_value(user).run()
    assert not app.exception
    run = explorer_env.parent / "recsys" / "demo"
    for path, title in ((run, "With augmentation"), (run / "base", "Without augmentation")):
        expected = recommend(load_run(path), [user], 10)
        shown = [d.value for d in app.dataframe if set(d.value.columns) == {"rank", "item_id", "title", "score"}]
        assert any(frame["item_id"].tolist() == expected["item_id"].tolist() for frame in shown), title
    history = table_with(app, "item_id", "title", "split")
    loaded = load_run(run)
    index = loaded.data.user_index()[user]
    pairs = np.concatenate([loaded.data.train, loaded.data.val, loaded.data.test])
    assert sorted(history["item_id"]) == sorted(loaded.data.item_ids[i] for i in pairs[pairs[:, 0] == index][:, 1])
    similar = table_with(app, "rank", "sample_id", "score", "sample_title")
    assert len(similar) == 10


def test_astro_page_plots_a_star_and_ranks_anomalies(explorer_env: Path) -> None:
    app = app_at("astro")
    assert not app.error
    charts = [c.proto.id for c in app.get("plotly_chart")]
    assert len(charts) >= 4  # map, raw and folded light curve, spectrum
    ranking = table_with(app, "sample_id", "anomaly_isolation_forest")
    expected = store_sql(
        explorer_env, "SELECT sample_id FROM samples_astro ORDER BY anomaly_isolation_forest DESC LIMIT 50"
    )
    assert ranking["sample_id"].tolist() == expected["sample_id"].tolist()
    for modality in ("photometry", "spectra", "metadata", "fused"):
        assert any(set(d.value.columns) >= {"sample_id", "score"} for d in app.dataframe), modality
    star = app.selectbox(key="astro_star").value
    label = store_sql(explorer_env, "SELECT label FROM samples_astro WHERE sample_id = ?", [star])["label"].iloc[0]
    app.multiselect(key="astro_classes").set_value([label]).run()
    assert not app.exception
    assert set(app.selectbox(key="astro_star").options) == set(
        store_sql(explorer_env, "SELECT sample_id FROM samples_astro WHERE label = ?", [label])["sample_id"]
    )


def test_pages_cope_with_a_store_without_their_domain(empty_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPLORER_STORE", str(empty_store))
    for page in ("home", "biomed", "astro", "news", "recsys", "sql"):
        app_at(page)


def test_sql_page_runs_the_documented_examples(explorer_env: Path) -> None:
    app = app_at("sql")
    app.text_area(key="sql_text").set_value("SELECT domain, count(*) AS n FROM all_embeddings GROUP BY domain").run()
    app.button[0].click().run()
    assert not app.exception
    assert app.success[0].value == "4 rows"


def test_picking_an_example_fills_the_query_box_and_each_example_runs_on_the_demo_store(explorer_env: Path) -> None:
    from apps.sql_examples import EXAMPLES
    from apps.store_access import run_user_sql

    app = app_at("sql")
    texts = set()
    for example in EXAMPLES[1:3]:
        app.selectbox(key="sql_example").set_value(example.title).run()
        assert app.text_area(key="sql_text").value == example.sql
        texts.add(app.text_area(key="sql_text").value)
    assert len(texts) == 2  # different examples, different queries
    app.button[0].click().run()
    assert not app.exception and not app.error
    assert app.success[0].value == f"{len(run_user_sql(EXAMPLES[2].sql).frame)} rows"
    for example in EXAMPLES:  # every example runs as shown and finds something
        result = run_user_sql(example.sql)
        assert len(result.frame) > 0 and not result.truncated, example.title


def test_sql_page_shows_the_schema_with_row_counts(explorer_env: Path) -> None:
    app = app_at("sql")
    schema = table_with(app, "name", "kind", "rows")
    tables = store_sql(
        explorer_env,
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'store' AND table_type = 'BASE TABLE'",
    )["table_name"]
    assert set(tables) <= set(schema["name"]) and {"all_embeddings", "embedding_inventory"} <= set(schema["name"])
    counted = schema.set_index("name")["rows"]
    assert counted["samples_news"] == store_sql(explorer_env, "SELECT count(*) AS n FROM samples_news")["n"].iloc[0]


def test_a_runaway_query_is_interrupted_with_a_clear_message(explorer_env: Path) -> None:
    import time

    from apps.store_access import QueryBounded, run_user_sql

    started = time.perf_counter()
    with pytest.raises(QueryBounded, match="stopped after 1 s"):
        run_user_sql("SELECT count(*) FROM range(1000000000000)", timeout_s=1)
    assert time.perf_counter() - started < 30  # interrupted, not run to the end (hours)


def test_a_huge_result_is_cut_at_the_cap_without_being_built(explorer_env: Path) -> None:
    from apps.store_access import run_user_sql

    # 10^12 rows if built in full; the wrapper's LIMIT stops DuckDB after cap + 1.
    result = run_user_sql("SELECT * FROM range(1000000) a, range(1000000) b -- a trailing comment", max_rows=500)
    assert len(result.frame) == 500 and result.truncated
    app = app_at("sql")
    app.text_area(key="sql_text").set_value("SELECT * FROM range(20000)").run()
    app.button[0].click().run()
    assert not app.exception
    assert "Showing the first 10,000 rows" in app.warning[0].value
    assert len(table_with(app, "range")) == 10_000


@pytest.mark.parametrize(
    "attack",
    [
        "DROP TABLE runs",
        "SELECT 1; DROP TABLE runs",
        "INSERT INTO runs (run_id) VALUES ('x')",
        "ATTACH '/tmp/evil.duckdb' AS evil",
        "COPY runs TO '/tmp/leak.csv'",
        "SELECT * FROM read_csv('/etc/passwd')",
        "PRAGMA database_list",
        "SET lock_configuration = false",
        "SELECT * FROM runs WHERE run_id = '' OR 1=1; --",
    ],
)
def test_sql_page_refuses_writes_and_file_access_without_erroring(attack: str, explorer_env: Path) -> None:
    before = file_digest(explorer_env)
    app = app_at("sql")
    app.text_area(key="sql_text").set_value(attack).run()
    app.button[0].click().run()
    assert not app.exception
    assert app.error or app.success  # a clear message either way (the OR 1=1 read is a harmless SELECT)
    assert file_digest(explorer_env) == before


def test_read_only_check_accepts_selects_and_ctes() -> None:
    assert check_read_only_sql("WITH x AS (SELECT 1) SELECT * FROM x;") == "WITH x AS (SELECT 1) SELECT * FROM x"
    for bad in ("", "DELETE FROM runs", "SELECT 1; SELECT 2"):
        with pytest.raises(RejectedQuery):
            check_read_only_sql(bad)


def plotted(values: object) -> list:
    """A plotly trace array as a list (plotly encodes numeric arrays as base64 ``{dtype, bdata}``)."""
    if isinstance(values, dict) and "bdata" in values:
        import base64

        array = np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"]))
        return array.reshape(values["shape"]).tolist() if "shape" in values else array.tolist()
    return list(values or [])


def plotly_figures(app: AppTest) -> list[dict]:
    """The plotly figures on the page (their JSON specs), in page order."""
    return [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]


@pytest.mark.parametrize("domain", ["biomed", "astro", "news", "recsys"])
def test_every_domain_page_plots_its_training_curves_from_metrics_csv(domain: str, explorer_env: Path) -> None:
    from shared.run_folder import read_metrics

    app = app_at(domain)
    curves = [f for f in plotly_figures(app) if any("step" in str(t.get("hovertemplate", "")) for t in f["data"])]
    assert curves, f"{domain}: no training-curve chart"
    run = app.selectbox(key=f"{domain}_curves_run").value
    rows = read_metrics(explorer_env.parent / run)
    wanted = set(app.multiselect(key=f"{domain}_curves_metrics").value)
    points = sum(len(plotted(trace["x"])) for trace in curves[-1]["data"])
    assert points == sum(1 for row in rows if row["metric"] in wanted) > 0


def test_home_shows_each_domains_headline_metrics_from_run_json(explorer_env: Path) -> None:
    app = app_at("home")
    table = table_with(app, "domain", "run")
    checked = 0
    for row in table.to_dict("records"):
        summary = json.loads((explorer_env.parent / row["run"] / "run.json").read_text())["summary"]
        for metric, value in summary.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and metric in table.columns:
                assert row[metric] == pytest.approx(float(value))
                checked += 1
    assert checked > 0
    assert {"biomed", "astro", "news", "recsys"} <= set(table["domain"])


def test_map_colours_by_any_column_hovers_captions_and_starts_in_box_select(explorer_env: Path) -> None:
    app = app_at("biomed")
    figure = plotly_figures(app)[0]
    assert figure["layout"]["dragmode"] == "select"
    assert all(trace["marker"]["opacity"] < 1 for trace in figure["data"])
    assert any("caption" in trace["hovertemplate"] for trace in figure["data"])
    options = app.selectbox(key="biomed_colour").options
    assert {"concept", "image_set"} <= set(options)
    app.selectbox(key="biomed_colour").set_value("image_set").run()
    names = {trace["name"] for trace in plotly_figures(app)[0]["data"]}
    samples = store_sql(explorer_env, "SELECT DISTINCT image_set FROM samples_biomed")["image_set"]
    assert names == set(samples.astype(str))
    # The rarest class is drawn last (on top).
    sizes = {trace["name"]: len(plotted(trace["x"])) for trace in plotly_figures(app)[0]["data"]}
    assert plotly_figures(app)[0]["data"][-1]["name"] == min(sizes, key=sizes.get)


def test_umap_is_offered_beside_pca(explorer_env: Path) -> None:
    app = app_at("astro")
    app.radio(key="astro_map_method").set_value("UMAP").run()
    assert not app.exception
    assert any(s.value == "Map (UMAP)" for s in app.subheader)


def test_a_large_model_is_mapped_from_a_sample_with_a_density_view(
    explorer_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import apps.domain_page as domain_page

    domain_page.map_points.clear()
    monkeypatch.setattr(domain_page, "MAP_POINTS", 20)
    points, total = domain_page.map_points("k", "astro", "photometry", "astrom3-clip", "pretrain-demo", 16)
    assert len(points) == 20 < total and points["sample_id"].is_unique
    again, _ = domain_page.map_points.__wrapped__("k", "astro", "photometry", "astrom3-clip", "pretrain-demo", 16)
    assert again["sample_id"].tolist() == points["sample_id"].tolist()  # repeatable sample
    domain_page.map_points.clear()


def test_a_map_selection_names_the_clicked_or_boxed_samples() -> None:
    """What a click or a box sends (plotly points with custom data) names the samples, in order, once each.

    That the page then opens the sample is checked in a real browser (tests/apps/test_browser.py).
    """
    from apps.domain_page import selected_sample_ids

    shown = pd.DataFrame({"sample_id": ["a", "b", "c"]})

    class Event:
        def __init__(self, selection: dict) -> None:
            self.selection = selection

    points = [{"customdata": ["c", "x"]}, {"customdata": ["a"]}, {"customdata": ["c"]}]
    assert selected_sample_ids(Event({"points": points, "point_indices": [2, 0, 2]}), shown) == ["c", "a"]
    assert selected_sample_ids(Event({"points": [], "point_indices": [1]}), shown) == ["b"]
    assert selected_sample_ids(Event({}), shown) == []


def test_biomed_detail_and_selection_show_the_samples_picture(explorer_env: Path) -> None:
    app = app_at("biomed")
    sample = app.selectbox(key="biomed_sample").value
    captions = [str(image.proto) for image in app.get("image")]
    assert any(f'caption: "{sample}"' in text for text in captions)
    neighbours = tables_with(app, "rank", "sample_id", "score", "caption")[0]
    assert neighbours["image"].str.startswith("data:image/png;base64,").all()


def test_astro_light_curve_has_dates_and_error_bars_and_full_neighbour_tables(explorer_env: Path) -> None:
    app = app_at("astro")
    curve = next(f for f in plotly_figures(app) if f["layout"].get("title", {}).get("text") == "Light curve")
    trace = curve["data"][0]
    assert str(plotted(trace["x"])[0])[:2] in ("19", "20")  # calendar dates, not 2.45e6
    errors = plotted(trace["error_y"]["array"])
    assert len(errors) == len(plotted(trace["y"])) > 0 and min(errors) > 0
    k = app.slider(key="astro_neighbour_k").value
    tables = tables_with(app, "rank", "sample_id", "score", "sample_label")
    assert len(tables) == 4 and all(len(t) == k for t in tables)


def test_recsys_colours_by_genre_shows_mnar_results_and_groups_variants(
    explorer_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from shared.run_folder import RunFolder

    runs = tmp_path / "runs"
    shutil.copytree(explorer_env.parent, runs)
    folder = RunFolder.create("recsys", "mnar-test", runs)
    (folder.path / "results.md").write_text("| estimator | nDCG@5 |\n|---|---|\n| Rel-MF | 0.123 |\n")
    folder.mark_finished(command="domains.recsys.mnar", outputs=["results.md"], summary={})
    store = runs / "embeddings.duckdb"
    writer = EmbeddingStore(store)
    with writer.writing() as session:  # 10 MNAR variants of one model: the picker groups them
        for seed in range(10):
            session.register_run(f"mnar/{seed}", "recsys", "mnar-relmf", f"seed{seed}", config={})
            session.write_embeddings(
                domain="recsys", modality="item", model_name="mnar-relmf", model_version=f"seed{seed}",
                run_id=f"mnar/{seed}", sample_ids=["tiny:item:1", "tiny:item:2", "tiny:item:3"],
                vectors=np.random.default_rng(seed).standard_normal((3, 8)),
            )  # fmt: skip
    writer.close()
    monkeypatch.setenv("EXPLORER_STORE", str(store))
    app = app_at("recsys")
    assert "genre" in app.selectbox(key="recsys_colour").options
    assert any("Rel-MF" in m.value for m in app.markdown)
    families = app.selectbox(key="recsys_family").options
    assert any(f.startswith("item · mnar-relmf (10 versions)") for f in families)
    assert len(families) < 10
    app.selectbox(key="recsys_family").set_value(next(f for f in families if "mnar-relmf" in f)).run()
    assert len(app.selectbox(key="recsys_model").options) == 10
    neighbours = tables_with(app, "rank", "sample_id", "score", "title")[0]
    assert neighbours["title"].notna().all()
