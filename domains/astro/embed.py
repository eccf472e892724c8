"""Embed every object with a pretrained AstroM3 into the DuckDB embedding store, with anomaly scores and
label-error flags.

    python -m domains.astro.embed                                   # the demo pretraining run
    python -m domains.astro.embed --run runs/astro/<run> --store runs/embeddings.duckdb
    python -m domains.astro.embed --run runs/astro/<run> --input runs/astro/<your light curves> --map_method pca

Writes four modalities per object (``photometry``, ``spectra``, ``metadata`` and ``fused``) for the
train, val and test splits of the run's (subset, seed), and the per-object table ``samples_astro`` (class,
split, IsolationForest and LOF anomaly scores, centroid distances, label-error flags). The work is done by
:mod:`domains.astro.embedding_export`.
"""

from __future__ import annotations

from domains.astro.embedding_export import EmbedConfig, EmbedResult, run_embed
from shared.cli import parse_config, run_command


def main(argv: list[str] | None = None) -> EmbedResult:
    """Command-line entry point (``python -m domains.astro.embed --help``)."""
    config = parse_config(EmbedConfig, argv, prog="python -m domains.astro.embed", description=__doc__)
    result = run_embed(config)  # under torchrun: every rank encodes a share, rank 0 scores and writes
    candidates = int(result.samples["label_error_candidate"].sum())
    print(
        f"embedded {result.n_objects} objects x {len(result.modalities)} modalities ({', '.join(result.modalities)}) as "
        f"{config.model_name}/{result.model_version}; {candidates} label-error candidates"
        + (f" (encoded across {result.encoding_processes} processes)" if result.encoding_processes > 1 else "")
    )
    print(f"wrote {result.store} (embeddings_* tables, samples_astro with anomaly scores and flags)")
    print("next: open the store in the Streamlit explorer (apps/), or query table samples_astro with duckdb")
    return result


if __name__ == "__main__":
    run_command(main)
