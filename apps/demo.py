"""``make demo``: run every domain's default job on its built-in data, fill the store, serve the explorer.

Each step is a real command (the same a user would type); a step that finished before is skipped, so a
second ``make demo`` reuses finished runs (delete ``runs/.demo/`` or the run folder to redo one).
``DEMO_SERVE=0`` runs the jobs and exits; ``DEMO_ONLY=astro,news`` limits the domains.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from shared.cli import write_text_atomically

MARKERS = Path("runs/.demo")


@dataclass(frozen=True)
class DemoStep:
    """One command of the demo and the domain it belongs to."""

    name: str
    domain: str
    argv: tuple[str, ...]

    @property
    def marker(self) -> Path:
        """File written when the step has succeeded."""
        return MARKERS / f"{self.name}.done"


STEPS: tuple[DemoStep, ...] = (
    DemoStep("biomed-pretrain", "biomed", ("-m", "domains.biomed.pretrain")),
    DemoStep("astro-pretrain", "astro", ("-m", "domains.astro.pretrain")),
    DemoStep("astro-embed", "astro", ("-m", "domains.astro.embed")),
    DemoStep("news-train", "news", ("-m", "domains.news.train")),
    DemoStep("news-embed", "news", ("-m", "domains.news.embed")),
    DemoStep("recsys-train", "recsys", ("-m", "domains.recsys.train")),
    DemoStep("recsys-embed", "recsys", ("-m", "domains.recsys.embed")),
    DemoStep("recsys-mnar", "recsys", ("-m", "domains.recsys.mnar")),
)


def run_steps(steps: tuple[DemoStep, ...], python: str = sys.executable) -> list[str]:
    """Run the steps in order, skipping finished ones; return the names of failed steps."""
    failed: list[str] = []
    MARKERS.mkdir(parents=True, exist_ok=True)
    for step in steps:
        if step.marker.is_file():
            print(f"[demo] {step.name}: finished earlier, reusing it ({step.marker})", flush=True)
            continue
        print(f"[demo] {step.name}: {python} {' '.join(step.argv)}", flush=True)
        started = time.perf_counter()
        result = subprocess.run([python, *step.argv], check=False)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            print(f"[demo] {step.name}: FAILED (exit {result.returncode}) after {elapsed:.0f} s", flush=True)
            failed.append(step.name)
            continue
        write_text_atomically(step.marker, f"{elapsed:.1f}\n")
        print(f"[demo] {step.name}: done in {elapsed:.0f} s", flush=True)
    return failed


def free_port() -> int:
    """A free localhost TCP port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    """Run the demo jobs, then serve the explorer unless ``DEMO_SERVE=0``."""
    only = {d.strip() for d in os.environ.get("DEMO_ONLY", "").split(",") if d.strip()}
    steps = tuple(step for step in STEPS if not only or step.domain in only)
    failed = run_steps(steps)
    print("[demo] results are in runs/<domain>/…; embeddings in runs/embeddings.duckdb", flush=True)
    if failed:
        print(f"[demo] failed steps: {', '.join(failed)} (see their output above)", flush=True)
    if os.environ.get("DEMO_SERVE", "1") == "0":
        sys.exit(1 if failed else 0)
    port = int(os.environ.get("DEMO_PORT", free_port()))
    print(f"[demo] explorer: http://127.0.0.1:{port}  (Ctrl-C to stop)", flush=True)
    command = [sys.executable, "-m", "streamlit", "run", "apps/explorer.py", "--server.port", str(port)]
    try:
        subprocess.run(command, check=False)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
