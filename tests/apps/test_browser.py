"""Real-browser test: `streamlit run` on a free localhost port, headless Chromium over DevTools, every page.

Chromium comes from Debian (`apt-get install chromium`; `make test` installs it where it can). Where it is
missing the test is skipped with that hint, except under CI (CI=true), where a missing browser fails.
Screenshots of the last run are kept in docs/screenshots/ and shown in the README.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from cdp_browser import HeadlessChromium

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
PAGES = {
    "home": ("", ["Domain CLIP explorer", "Embeddings by domain"]),
    "biomed": ("biomed", ["Biomed embeddings", "Nearest neighbours", "Search and classify", "Text → images"]),
    "astro": (
        "astro",
        ["Astro embeddings", "Map (PCA)", "Light curve", "Spectrum", "Anomaly ranking", "Training curves"],
    ),
    "news": ("news", ["News embeddings", "Nearest neighbours", "Is this post fake?", "Browse posts", "Test ROC-AUC"]),
    "recsys": (
        "recsys",
        [
            "Recsys embeddings",
            "Users and recommendations",
            "With augmentation",
            "Similar items",
            "Unbiased learning from MNAR feedback",
        ],
    ),
    "sql": ("sql", ["SQL over the embedding store", "Example queries", "Schema"]),
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def chromium_executable() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = "Debian's Chromium is not installed: run `apt-get install chromium` (make test does it as root)"
    if os.environ.get("CI"):
        pytest.fail(message + " — CI must not skip the browser test")
    pytest.skip(message)


@pytest.mark.slow
def test_every_page_renders_in_a_real_browser(store_file: Path) -> None:
    executable = chromium_executable()
    port = free_port()
    environment = {**os.environ, "EXPLORER_STORE": str(store_file)}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "apps/explorer.py",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
        ],  # fmt: skip
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    browser = None
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    output = server.stdout.read().decode(errors="replace") if server.stdout else ""
                    pytest.fail(f"streamlit did not come up on port {port}:\n{output[-3000:]}")
                time.sleep(0.5)
        browser = HeadlessChromium(executable, free_port())
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        timings: dict[str, dict[str, float]] = {}
        for name, (path, expected_texts) in PAGES.items():
            text = browser.open_and_wait(f"http://127.0.0.1:{port}/{path}")
            cold = browser.last_render_seconds  # first visit: models loaded, caches filled
            assert not browser.has_exception(), f"page {name} shows an exception:\n{text[:2000]}"
            for expected in expected_texts:
                assert expected in text, f"page {name} lacks {expected!r}:\n{text[:2000]}"
            browser.open_and_wait(f"http://127.0.0.1:{port}/{path}")
            timings[name] = {"cold_s": round(cold, 2), "warm_s": round(browser.last_render_seconds, 2)}
            browser.screenshot(SCREENSHOTS / f"{name}.png")
        # Linked views: clicking a map point (biomed) or box-selecting it (astro, the map's default tool)
        # opens that sample: selection table, neighbours and detail (for astro also the star's light curve).
        for name in ("biomed", "astro"):
            browser.open_and_wait(f"http://127.0.0.1:{port}/{name}")
            if name == "biomed":
                clicked, start_mode = browser.click_first_map_point()
                assert start_mode == "select", f"the map starts in {start_mode} mode, not box-select"
            else:
                clicked = browser.box_select_first_map_point()
            text = browser.wait_until_rendered()
            assert not browser.has_exception(), f"{name}: the selection raised:\n{text[:2000]}"
            assert "1 selected" in text, f"{name}: the map selected nothing:\n{text[:3000]}"
            detail = text.split("Detail", 1)[-1]
            assert clicked in detail, f"{name}: the detail does not show the selected {clicked}:\n{detail[:2000]}"
            if name == "astro":
                star = text.split("Stars", 1)[-1]
                assert clicked in star.split("Light curve", 1)[0], "the star picker did not follow the map"
            browser.screenshot(SCREENSHOTS / f"{name}-selected.png")
        (REPO / ".tmp").mkdir(exist_ok=True)
        (REPO / ".tmp" / "browser_page_timings.json").write_text(json.dumps(timings, indent=1))
        print("page timings (s):", json.dumps(timings))
    finally:
        if browser is not None:
            browser.close()
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
