"""``make demo``: run every domain's default job on its built-in data, fill the store, serve the explorer.

Each step is a real command (the same a user would type), run in its own process. A step is reused when it
finished before (its marker in ``runs/.demo/``) and the outputs it declares (for a training step, its run
folder's ``run.json``) are still there, so a second ``make demo`` reuses
finished runs; delete a run folder (or its marker) to redo that step. ``DEMO_SERVE=0`` runs the jobs and
exits; ``DEMO_ONLY=astro,news`` limits the domains; ``DEMO_PORT`` fixes the explorer's port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shared.atomic_files import write_text_atomically
from shared.quiet_output import silence_library_chatter

MARKERS = Path("runs/.demo")
STORE = "runs/embeddings.duckdb"


@dataclass(frozen=True)
class DemoStep:
    """One command of the demo, the domain it belongs to and the files it must leave behind.

    Attributes:
        name: Step name (also the marker file's name).
        domain: The explorer page the step feeds.
        argv: Arguments after the Python executable.
        outputs: Paths (relative to the working directory) that must exist for the step to count as done.
    """

    name: str
    domain: str
    argv: tuple[str, ...]
    outputs: tuple[str, ...] = field(default=())

    def marker(self, markers: Path = MARKERS) -> Path:
        """File written when the step has succeeded."""
        return markers / f"{self.name}.done"

    def finished(self, markers: Path = MARKERS) -> bool:
        """True when the step succeeded before and its outputs are still in place."""
        return self.marker(markers).is_file() and all(Path(p).exists() for p in self.outputs)


STEPS: tuple[DemoStep, ...] = (
    # Builds the built-in corpus, trains, evaluates, exports runs/biomed/demo/export (open_clip local-dir)
    # and writes image and caption vectors into the store.
    DemoStep(
        "biomed-pretrain",
        "biomed",
        ("-m", "domains.biomed.pretrain", "--store", STORE),
        ("runs/biomed/demo/run.json", "runs/biomed/demo/export/open_clip_config.json"),
    ),
    DemoStep("astro-pretrain", "astro", ("-m", "domains.astro.pretrain"), ("runs/astro/pretrain-demo/run.json",)),
    DemoStep("astro-embed", "astro", ("-m", "domains.astro.embed", "--store", STORE)),
    DemoStep("news-train", "news", ("-m", "domains.news.train"), ("runs/news/demo/run.json",)),
    DemoStep("news-embed", "news", ("-m", "domains.news.embed", "--store", STORE)),
    # The augmented model in runs/recsys/demo and the plain LightGCN in runs/recsys/demo/base.
    DemoStep(
        "recsys-train",
        "recsys",
        ("-m", "domains.recsys.train"),
        ("runs/recsys/demo/run.json", "runs/recsys/demo/base/run.json"),
    ),
    DemoStep("recsys-embed", "recsys", ("-m", "domains.recsys.embed", "--store", STORE)),
    # Rel-MF and friends on semi-synthetic MNAR MovieLens-100K (the one-minute preset); their user/item
    # factors go into the store too.
    DemoStep(
        "recsys-mnar",
        "recsys",
        ("-m", "domains.recsys.mnar", "--config", "domains/recsys/configs/mnar_quick.yaml", "--store", STORE),
        ("runs/recsys/mnar-semi-synthetic-quick/run.json",),
    ),
)


def run_steps(
    steps: Sequence[DemoStep], python: str = sys.executable, markers: Path = MARKERS
) -> tuple[list[str], dict[str, float]]:
    """Run the steps in order, reusing finished ones.

    A step that depends on an earlier one of the same domain is skipped when that one failed.

    Returns:
        The names of failed (or skipped because of a failure) steps, and the seconds each step ran
        (0.0 for a reused step).
    """
    failed: list[str] = []
    seconds: dict[str, float] = {}
    failed_domains: set[str] = set()
    markers.mkdir(parents=True, exist_ok=True)
    for step in steps:
        if step.domain in failed_domains:
            print(f"[demo] {step.name}: not run (an earlier {step.domain} step failed)", flush=True)
            failed.append(step.name)
            continue
        if step.finished(markers):
            print(f"[demo] {step.name}: finished earlier, reusing it ({step.marker(markers)})", flush=True)
            seconds[step.name] = 0.0
            continue
        # A redone step invalidates the later steps of its domain (they read its outputs).
        for later in steps[steps.index(step) + 1 :]:
            if later.domain == step.domain:
                later.marker(markers).unlink(missing_ok=True)
        print(f"[demo] {step.name}: {python} {' '.join(step.argv)}", flush=True)
        started = time.perf_counter()
        result = subprocess.run([python, *step.argv], check=False)
        elapsed = time.perf_counter() - started
        seconds[step.name] = elapsed
        missing = [p for p in step.outputs if not Path(p).exists()]
        if result.returncode != 0 or missing:
            reason = f"exit {result.returncode}" if result.returncode != 0 else f"missing outputs {missing}"
            print(f"[demo] {step.name}: FAILED ({reason}) after {elapsed:.0f} s", flush=True)
            failed.append(step.name)
            failed_domains.add(step.domain)
            continue
        write_text_atomically(step.marker(markers), f"{elapsed:.1f}\n")
        print(f"[demo] {step.name}: done in {elapsed:.0f} s", flush=True)
    return failed, seconds


def free_port() -> int:
    """A free localhost TCP port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    """Run the demo jobs, then serve the explorer unless ``DEMO_SERVE=0``."""
    silence_library_chatter()  # the explorer it serves loads models too
    only = {d.strip() for d in os.environ.get("DEMO_ONLY", "").split(",") if d.strip()}
    steps = tuple(step for step in STEPS if not only or step.domain in only)
    started = time.perf_counter()
    failed, seconds = run_steps(steps)
    print("[demo] step times: " + ", ".join(f"{name} {s:.0f} s" for name, s in seconds.items()), flush=True)
    print(f"[demo] total {time.perf_counter() - started:.0f} s", flush=True)
    print(f"[demo] results are in runs/<domain>/…; embeddings in {STORE}", flush=True)
    if failed:
        print(f"[demo] failed steps: {', '.join(failed)} (see their output above)", flush=True)
    if os.environ.get("DEMO_SERVE", "1") == "0":
        print("[demo] next: `make demo` to serve the explorer, or `streamlit run apps/explorer.py`", flush=True)
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
