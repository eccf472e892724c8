"""Write the semi-synthetic ML-100K MNAR world as a click log whose propensities are the true exposure probabilities.

``train.csv`` holds every exposed pair (``user,item,click,propensity``; click = the sampled relevance R,
propensity = the generator's θ_ui), ``test.csv`` a missing-at-random log (random unclicked items per user,
label R). Run the real-data protocol on them with logged or popularity-estimated propensities:

    python -m domains.recsys.mnar.write_semi_synthetic_log --out_dir runs/mnar-semi-synthetic-log
    python -m domains.recsys.mnar --config domains/recsys/configs/mnar_real_protocol.yaml \\
        --input runs/mnar-semi-synthetic-log/train.csv --test_input runs/mnar-semi-synthetic-log/test.csv
"""

from __future__ import annotations

from domains.recsys.mnar.semi_synthetic_log import SemiSyntheticLog, SemiSyntheticLogConfig, write_semi_synthetic_log
from shared.cli import parse_config, run_command


def main(argv: list[str] | None = None) -> SemiSyntheticLog:
    """Parse the flags, write the log and say what was written."""
    config = parse_config(
        SemiSyntheticLogConfig,
        argv,
        prog="python -m domains.recsys.mnar.write_semi_synthetic_log",
        description=__doc__,
    )
    written = write_semi_synthetic_log(config)
    print(
        f"[mnar] wrote {written.train_path} ({written.exposures} exposures, {written.clicks} clicks) and "
        f"{written.test_path} ({written.test_rows} rows, {written.test_relevant_rate:.1%} relevant)"
    )
    print(
        "[mnar] next: python -m domains.recsys.mnar --config domains/recsys/configs/mnar_real_protocol.yaml "
        f"--input {written.train_path} --test_input {written.test_path}"
    )
    return written


if __name__ == "__main__":
    run_command(main)
