"""Does the demo model learn, or memorise? Untrained vs trained on unseen compositions, over seeds.

:func:`run_heldout_study` trains the demo recipe once per seed (each seed fixes the initial weights and
the data order; the corpus and its held-out split are the same for every seed and for both columns) and
measures the model before and after training on the demo corpus's held-out split, whose captions are
attribute combinations never seen in training (:data:`domains.biomed.demo.HELD_OUT_COMBINATIONS`):

* retrieval R@1 among the held-out items: image→text (11 unseen captions), and text→image with one
  query per caption where any of its renderings is a hit (per-pair text→image R@1 cannot exceed 1/4
  with 4 renderings per caption);
* zero-shot top-1 over all 45 generator combinations (34 seen in training, 11 unseen), the true one
  always unseen (preset ``demo_compositions``).

The table reports each metric's mean and 95% interval over the seeds and the paired difference
trained − untrained with its interval and verdict, all through :mod:`shared.seed_statistics`.
``python -m domains.biomed.heldout_study`` is the thin command around it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.atomic_files import write_text_atomically
from shared.seed_statistics import markdown_table, paired_difference, summarize, verdict
from shared.user_errors import UserError

#: (label, path into one evaluation's metrics) of the metrics the study reports.
STUDY_METRICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("image→text R@1", ("retrieval", "image_to_text_R@1")),
    ("text→image R@1, any rendering of the caption counts", ("retrieval", "text_to_image_caption_R@1")),
    ("zero-shot top-1 (45 combinations)", ("zero_shot", "top1")),
)


@dataclass
class HeldoutStudyConfig:
    """Untrained vs trained demo model on the held-out (unseen-combination) split, over seeds."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    """Training seeds (initial weights and data order); the corpus is the same for all."""
    max_steps: int = 240
    """Training steps per seed (the demo preset's budget)."""
    run_name: str = "heldout"
    """Runs are written to <runs_root>/biomed/<run_name>-seed<k>."""
    runs_root: str = "runs"
    """Root folder of all run folders."""
    demo_dir: str = "runs/biomed/demo_corpus"
    """Where the demo corpus is (built if missing or outdated)."""
    demo_image_size: int = 96
    """Image side of the demo corpus in pixels (the demo preset's)."""
    model: str = "demo"
    """Model to train (pretrain's --model.source): the demo preset, or e.g. tiny for a quick check."""
    pretrained_towers: bool = True
    """Start from the towers' own pretrained weights (MiniLM text for the demo model), as the demo does."""
    batch_size: int = 32
    """Training batch size (the demo preset's)."""
    reuse_finished: bool = True
    """Read a seed's metrics from its finished run folder (eval/metrics.json) instead of training it again: seeds can run as separate processes and one last call collects the table."""
    out: str = ""
    """Markdown file the result table is written to (empty: only printed)."""


@dataclass
class HeldoutStudyResult:
    """Per-seed metrics and the summary table."""

    per_seed: dict[int, dict[str, dict[str, float]]]
    """seed → {"untrained" | "trained" → metric label → value}."""
    table: str
    """The markdown table (mean [95% interval] per column, paired difference and verdict)."""
    seconds: float
    """Wall-clock duration of the whole study."""


def _metric(metrics: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = metrics
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value)


def _finished_metrics(run_dir: Path, max_steps: int) -> dict[str, Any] | None:
    """A finished run's eval/metrics.json when it trained ``max_steps`` and measured both columns, else None."""
    import json

    from shared.run_folder import FINISHED_MARKER

    try:
        metrics = json.loads((run_dir / "eval" / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    finished = (run_dir / FINISHED_MARKER).is_file()
    complete = "untrained" in metrics and "trained" in metrics
    return metrics if finished and complete and metrics.get("training", {}).get("steps") == max_steps else None


def heldout_table(per_seed: dict[int, dict[str, dict[str, float]]]) -> str:
    """The study's markdown table from per-seed metrics (see :class:`HeldoutStudyResult`)."""
    rows = []
    for label, _ in STUDY_METRICS:
        untrained = {seed: values["untrained"].get(label) for seed, values in per_seed.items()}
        trained = {seed: values["trained"].get(label) for seed, values in per_seed.items()}
        difference = paired_difference(trained, untrained)
        rows.append([label, summarize(untrained.values()).format(), summarize(trained.values()).format(),
                     difference.format(), verdict(difference)])  # fmt: skip
    header = ["metric (held-out, unseen combinations)", "untrained", "trained",
              "trained − untrained (paired)", "trained beats untrained"]  # fmt: skip
    return markdown_table(header, rows)


def run_heldout_study(config: HeldoutStudyConfig, say: Callable[[str], None] = print) -> HeldoutStudyResult:
    """Train and evaluate the demo recipe once per seed; summarise untrained vs trained.

    Raises:
        UserError: No seeds, or fewer than one training step.
    """
    from domains.biomed.training import DataConfig, PretrainConfig, pretrain

    if not config.seeds:
        raise UserError("--seeds: give at least one seed (5 for a 95% interval worth reading)")
    if config.max_steps < 1:
        raise UserError(f"--max_steps: must be >= 1, got {config.max_steps}")
    started = time.perf_counter()
    per_seed: dict[int, dict[str, dict[str, float]]] = {}
    base = PretrainConfig()
    for seed in config.seeds:
        run = dataclasses.replace(
            base,
            run_name=f"{config.run_name}-seed{seed}",
            runs_root=config.runs_root,
            model=dataclasses.replace(base.model, source=config.model, pretrained_towers=config.pretrained_towers),
            data=dataclasses.replace(
                DataConfig(),
                demo_dir=config.demo_dir,
                demo_image_size=config.demo_image_size,
                batch_size=config.batch_size,
            ),  # fmt: skip
            trainer=dataclasses.replace(base.trainer, seed=seed, max_steps=config.max_steps),
            zero_shot="demo_compositions",
            evaluate_untrained=True,
            export=False,
            embed=False,
        )
        metrics = _finished_metrics(Path(config.runs_root) / "biomed" / run.run_name, run.trainer.max_steps)
        if metrics is None or not config.reuse_finished:
            say(f"seed {seed}: training {config.max_steps} steps ...")
            metrics = pretrain(run, say=lambda _message: None).metrics
        else:
            say(f"seed {seed}: read from its finished run folder")
        per_seed[seed] = {
            column: {
                label: value
                for label, path in STUDY_METRICS
                if (value := _metric(metrics.get(column, {}), path)) is not None
            }
            for column in ("untrained", "trained")
        }
        say(f"seed {seed}: " + "; ".join(f"{label} {per_seed[seed]['untrained'].get(label, float('nan')):.3f} → "
                                          f"{per_seed[seed]['trained'].get(label, float('nan')):.3f}"
                                          for label, _ in STUDY_METRICS))  # fmt: skip
    table = heldout_table(per_seed)
    if config.out:
        write_text_atomically(Path(config.out), table)
    return HeldoutStudyResult(per_seed, table, time.perf_counter() - started)
