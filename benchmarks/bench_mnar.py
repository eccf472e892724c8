"""WMF through our MNAR code vs the ``implicit`` library's ALS, plus Rel-MF training throughput.

Data: MovieLens-100K from the installed recbole package (read at run time), ratings ≥ 4 as clicks; 20 % of
the clicks held out. Both models get the same training clicks, the same latent dimension and the same number
of CPU threads, and are scored the same way: Recall@5 of the held-out clicks when ranking all items not
clicked in training (per user, averaged over users with held-out clicks).

- ours: ``fit_pointwise`` with the ``wmf`` estimator (squared loss, down-weighted unlabeled pairs, Adam,
  balanced positive/unlabeled minibatches: the authors' real-data recipe), through the core trainer as
  ``python -m domains.recsys.mnar`` runs it (its checkpoint and ``metrics.csv`` writes are timed too);
- peer: ``implicit`` 0.7 ``AlternatingLeastSquares`` (confidence-weighted MF by conjugate-gradient ALS, C++).

Then Rel-MF (``relmf``, popularity propensities, η = 0.5) training throughput in user–item pairs per second.
Ends with one JSON line; ``metric`` = WMF fit time, ``ratio`` = ours / peer (above 1 = slower than implicit).

    python -m benchmarks.bench_mnar [--dim 64] [--iterations 600] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import scipy.sparse as sp
import torch

from benchmarks._report import print_result
from domains.recsys.mnar.data import read_movielens_100k_ratings, split_validation_clicks, training_feedback
from domains.recsys.mnar.losses import EstimatorSpec
from domains.recsys.mnar.metrics import propensity_weighted_ranking_metrics
from domains.recsys.mnar.sampling import PairSampler
from domains.recsys.mnar.training import fit_pointwise, mnar_trainer_config


def held_out_recall_at_5(scores: np.ndarray, train, test) -> float:
    """Recall@5 of held-out clicks, ranking all items with training clicks excluded (θ ≡ 1 → plain recall)."""
    result = propensity_weighted_ranking_metrics(
        scores,
        test["user"].to_numpy(),
        test["item"].to_numpy(),
        np.ones(len(test)),
        ks=(5,),
        estimator="ips",
        excluded_users=train["user"].to_numpy(),
        excluded_items=train["item"].to_numpy(),
    )
    return result["Recall@5"]


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=64, help="latent dimension of both models")
    parser.add_argument("--iterations", type=int, default=600, help="Adam steps of our WMF and Rel-MF fits")
    parser.add_argument("--batch-size", type=int, default=4096, help="pairs per step of our fits")
    parser.add_argument("--als-iterations", type=int, default=15, help="ALS sweeps of implicit")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for both libraries")
    args = parser.parse_args(argv)

    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    data = read_movielens_100k_ratings()
    train, test = split_validation_clicks(data, fraction=0.2, seed=0)
    feedback = training_feedback(data, train, propensity="none")
    user_items = sp.csr_matrix(
        (np.ones(len(train), dtype=np.float32), (train["user"].to_numpy(), train["item"].to_numpy())),
        shape=(data.n_users, data.n_items),
    )

    trainer = mnar_trainer_config(max_steps=args.iterations, progress_bar=False)
    work = tempfile.TemporaryDirectory(prefix="bench_mnar_", dir=os.environ.get("TMPDIR"))
    started = time.perf_counter()
    wmf = fit_pointwise(
        PairSampler(feedback, positive_fraction=0.5, seed=0),
        EstimatorSpec("wmf", loss="squared", unlabeled_weight=0.977, normalization="weighted"),
        dim=args.dim,
        batch_size=args.batch_size,
        trainer=trainer,
        run_dir=f"{work.name}/wmf",
    )
    ours_seconds = time.perf_counter() - started
    ours_recall = held_out_recall_at_5(wmf.model.score_matrix().numpy(), train, test)

    als = AlternatingLeastSquares(
        factors=args.dim, iterations=args.als_iterations, num_threads=args.threads, random_state=0
    )
    with threadpool_limits(args.threads, "blas"):  # implicit's advice: no BLAS threads inside its own pool
        started = time.perf_counter()
        als.fit(user_items, show_progress=False)
        peer_seconds = time.perf_counter() - started
    peer_recall = held_out_recall_at_5(np.asarray(als.user_factors) @ np.asarray(als.item_factors).T, train, test)

    relmf_feedback = training_feedback(data, train, propensity="popularity", eta=0.5)
    started = time.perf_counter()
    relmf = fit_pointwise(
        PairSampler(relmf_feedback, positive_fraction=0.5, seed=0),
        EstimatorSpec("relmf", loss="squared", normalization="weighted"),
        dim=args.dim,
        batch_size=args.batch_size,
        trainer=trainer,
        run_dir=f"{work.name}/relmf",
    )
    relmf_pairs_per_s = relmf.pairs_seen / (time.perf_counter() - started)
    work.cleanup()
    relmf_recall = held_out_recall_at_5(relmf.model.score_matrix().numpy(), train, test)

    print(
        f"WMF ours {ours_seconds:.1f}s Recall@5 {ours_recall:.4f} | implicit ALS {peer_seconds:.1f}s "
        f"Recall@5 {peer_recall:.4f} | Rel-MF {relmf_pairs_per_s:,.0f} pairs/s Recall@5 {relmf_recall:.4f}"
    )
    print_result(
        "bench_mnar",
        "wmf_fit_seconds",
        ours_seconds,
        peer_seconds,
        ours_seconds / peer_seconds,
        peer_name="implicit.cpu.als.AlternatingLeastSquares (implicit 0.7.3)",
        recall_at_5_ours=round(ours_recall, 4),
        recall_at_5_peer=round(peer_recall, 4),
        relmf_pairs_per_s=round(relmf_pairs_per_s, 1),
        relmf_recall_at_5=round(relmf_recall, 4),
        threads=args.threads,
        dim=args.dim,
    )


if __name__ == "__main__":
    main()
