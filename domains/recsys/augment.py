"""LLM graph augmentation (LLMRec): ``python -m domains.recsys.augment --run runs/recsys/demo/base``.

The trained run's model proposes its top-k candidates per user; the configured backend then answers

* ``edges``: a liked and a disliked candidate (``pos::neg``) → one augmented BPR triplet per user;
* ``attributes``: an item's ``director::country::language``;
* ``profiles``: a JSON user profile (age, gender, liked/disliked genre, liked directors, country, language).

Prompts are the templates in ``domains/recsys/prompts/``; every raw answer is cached on disk, so a rerun is
resumable and idempotent; malformed answers are counted and dropped. Output (RecBole-style atomic files plus
``summary.json``) goes to ``runs/recsys/<run_name>/augmentation/``.
"""

from __future__ import annotations

from domains.recsys.llmrec.augmentation import AUGMENTATION_DIR, AugmentConfig, augment_run
from shared.cli import parse_config, run_command


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    config = parse_config(AugmentConfig, argv, prog="python -m domains.recsys.augment")
    run, result = augment_run(config)
    for task, counts in result.summary.items():
        print(
            f"{task}: requested {counts.requested}, answered {counts.answered}, cached {counts.cached}, "
            f"malformed {counts.malformed}, failed {counts.failed}, unsupported {counts.unsupported}"
        )
    out = run.path / AUGMENTATION_DIR
    print(f"Wrote augmentation to {out}")
    print(f"Next: python -m domains.recsys.train --augmentation {out} --run_name {config.run_name}-model")


if __name__ == "__main__":
    run_command(main)
