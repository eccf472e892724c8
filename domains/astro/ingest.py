"""``python -m domains.astro.ingest``: light curves (+ LAMOST spectra + catalogue) → shards and splits.

    python -m domains.astro.ingest                                    # the built-in demo set
    python -m domains.astro.ingest --catalogue asassn_catalog.csv --lightcurve_dir vardb_files \\
        --spectrum_index lamost_spec.csv --spectrum_dir spectra --run_name asassn
    python -m domains.astro.ingest --objects stars.csv --lightcurve_dir curves --columns.time MJD \\
        --columns.time_format mjd --columns.mag Mag --columns.mag_err Err --run_name my-survey
                                                                      # any survey, photometry only

With ``--objects`` (a table of ids and labels) the light curves may be CSV, ECSV, FITS or whitespace text,
read through a column map (``--columns.*`` flags or a ``--column_map`` YAML file), and ``--modalities`` picks
what is ingested (photometry alone is a valid dataset); the work is done by
:mod:`domains.astro.lightcurve_ingest`.

Writes ``runs/astro/<run_name>/`` (shards with a manifest, splits for five seeds and four label budgets,
``ingest_report.json``, ``problems.csv``, ``config.yaml``, ``run.json``). Unusable objects are reported one
by one and left out; the work is done by :mod:`domains.astro.ingest_pipeline`.
"""

from __future__ import annotations

from collections import Counter

from domains.astro.ingest_pipeline import IngestConfig, IngestResult, run_ingest
from domains.astro.lightcurve_ingest import run_lightcurve_ingest
from shared.cli import parse_config, run_command


def main(argv: list[str] | None = None) -> IngestResult:
    """Command-line entry point (``python -m domains.astro.ingest --help``)."""
    config = parse_config(IngestConfig, argv, prog="python -m domains.astro.ingest", description=__doc__)
    result = run_lightcurve_ingest(config) if config.objects else run_ingest(config)
    print(f"ingested {result.num_ingested} objects into {result.shard_dir}")
    print(f"splits: {result.split_dir}   report: {result.run_dir / 'ingest_report.json'}")
    print(f"per-object report (period flags): {result.run_dir / 'objects.csv'}")
    if result.problems:
        reasons = Counter(p["reason"] for p in result.problems)
        print(f"left out {len(result.problems)} objects: " + ", ".join(f"{n} {r}" for r, n in reasons.most_common()))
    if config.objects and "spectra" not in config.modalities:
        print(f"next: python -m domains.astro.finetune --mode photo --input {result.run_dir}")
    else:
        print(f"next: python -m domains.astro.pretrain --input {result.run_dir}")
    return result


if __name__ == "__main__":
    run_command(main)
