"""MNAR solvers like with like: our closed-form ALS vs the ``implicit`` library's ALS on the same objective.

Data: the semi-synthetic ML-100K world (:mod:`domains.recsys.mnar.semi_synthetic`, exposure power p = 1) as a
click log with the true exposure probabilities as logged propensities; 10 % of the clicks held out as in the
real-data protocol; metric: DCG@5 and Recall@5 on the missing-at-random test log (paper conventions).

- WMF, one objective for both: ``Σ_clicked α(1 − x_u·y_i)² + Σ_unclicked (x_u·y_i)² + λ(‖X‖² + ‖Y‖²)``, the
  same factors, iterations, λ and α; ours = :func:`~domains.recsys.mnar.alternating_least_squares.fit_alternating_least_squares`
  with 3 conjugate-gradient steps per row (torch), peer = ``implicit.cpu.als.AlternatingLeastSquares``
  (its default CG solver, C++). Both final factorisations are scored by the same objective function.
- Rel-MF on a linear score (targets 1/θ, unit weights: one shared Cholesky factorisation per half-sweep) with
  the same factors, iterations and λ, timed against the same ``implicit`` fit.
- For reference, the paper's Rel-MF (sigmoid link, squared loss, Adam minibatches through the core trainer,
  ``--sgd-steps``) on the same data: its time and MAR metrics.

Every fit runs on ``--threads`` CPU threads (BLAS too). Ends with one JSON line: ``metric`` = Rel-MF ALS fit
seconds, ``peer`` = implicit ALS fit seconds, ``ratio`` = ours / peer (the goal: at most 2).

    python -m benchmarks.bench_mnar [--dim 64] [--iterations 15] [--regularization 10] [--alpha 1] [--threads 1]
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
from domains.recsys.mnar.alternating_least_squares import (
    fit_alternating_least_squares,
    least_squares_objective,
    relmf_problem,
    wmf_problem,
)
from domains.recsys.mnar.data import (
    MnarDataset,
    read_movielens_100k_ratings,
    split_validation_clicks,
    training_feedback,
)
from domains.recsys.mnar.losses import EstimatorSpec
from domains.recsys.mnar.metrics import mar_ranking_metrics
from domains.recsys.mnar.sampling import PairSampler
from domains.recsys.mnar.semi_synthetic import GeneratorSettings, build_semi_synthetic_world
from domains.recsys.mnar.semi_synthetic_log import semi_synthetic_click_tables
from domains.recsys.mnar.training import fit_pointwise, mnar_trainer_config


def mar_metrics(scores: np.ndarray, test) -> dict[str, float]:
    """DCG@5 and Recall@5 (paper conventions) of a score matrix on the MAR test log."""
    users, items, labels = (test[c].to_numpy() for c in ("user", "item", "label"))
    out = mar_ranking_metrics(users, labels, scores[users, items], ks=(5,), conventions="paper")
    return {"DCG@5": round(out["DCG@5"], 4), "Recall@5": round(out["Recall@5"], 4)}


def semi_synthetic_dataset(work: str, power: float) -> MnarDataset:
    """The semi-synthetic world of exposure power ``power`` as an :class:`MnarDataset` (no files written but fits)."""
    ratings = read_movielens_100k_ratings()
    world = build_semi_synthetic_world(ratings, GeneratorSettings(), f"{work}/generator")
    train, test = semi_synthetic_click_tables(world, power)
    n_users, n_items = world.shape
    return MnarDataset(
        "semi_synthetic_log",
        n_users,
        n_items,
        train,
        test.rename(columns={"click": "label"}),
        np.arange(n_users),
        np.arange(n_items),
    )


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=64, help="latent dimension of every model")
    parser.add_argument("--iterations", type=int, default=15, help="ALS sweeps of ours and implicit's")
    parser.add_argument("--regularization", type=float, default=10.0, help="λ of both ALS objectives")
    parser.add_argument("--alpha", type=float, default=1.0, help="WMF click weight α (implicit's alpha)")
    parser.add_argument("--power", type=float, default=1.0, help="exposure power p of the semi-synthetic world")
    parser.add_argument("--sgd-steps", type=int, default=1000, help="Adam steps of the paper's sigmoid Rel-MF")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for every library")
    args = parser.parse_args(argv)

    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    work = tempfile.TemporaryDirectory(prefix="bench_mnar_", dir=os.environ.get("TMPDIR"))
    data = semi_synthetic_dataset(work.name, args.power)
    train, _ = split_validation_clicks(data, 0.1)
    logged = training_feedback(data, train, propensity="logged")
    settings = {"dim": args.dim, "regularization": args.regularization, "iterations": args.iterations}
    results: dict[str, dict[str, float]] = {}

    with threadpool_limits(args.threads, "blas"):  # implicit's advice: no BLAS threads inside its own pool
        wmf = wmf_problem(logged, click_weight=args.alpha)
        started = time.perf_counter()
        ours = fit_alternating_least_squares(wmf, **settings)
        results["wmf_als_ours"] = {"seconds": time.perf_counter() - started}
        results["wmf_als_ours"]["objective"] = least_squares_objective(
            wmf, ours.user_factors, ours.item_factors, args.regularization
        )
        results["wmf_als_ours"] |= mar_metrics(ours.user_factors @ ours.item_factors.T, data.test)

        peer = AlternatingLeastSquares(
            factors=args.dim,
            regularization=args.regularization,
            alpha=args.alpha,
            iterations=args.iterations,
            num_threads=args.threads,
            random_state=0,
        )
        clicks = sp.csr_matrix(
            (np.ones(logged.users.size, dtype=np.float32), (logged.users, logged.items)),
            shape=(logged.n_users, logged.n_items),
        )
        started = time.perf_counter()
        peer.fit(clicks, show_progress=False)
        results["wmf_als_implicit"] = {"seconds": time.perf_counter() - started}
        user_factors, item_factors = np.asarray(peer.user_factors), np.asarray(peer.item_factors)
        results["wmf_als_implicit"]["objective"] = least_squares_objective(
            wmf, user_factors, item_factors, args.regularization
        )
        results["wmf_als_implicit"] |= mar_metrics(user_factors @ item_factors.T, data.test)

        started = time.perf_counter()
        relmf = fit_alternating_least_squares(relmf_problem(logged), **settings)
        results["relmf_als"] = {"seconds": time.perf_counter() - started}
        results["relmf_als"] |= mar_metrics(relmf.user_factors @ relmf.item_factors.T, data.test)

    trainer = mnar_trainer_config(max_steps=args.sgd_steps, progress_bar=False, log_every=args.sgd_steps)
    started = time.perf_counter()
    sgd = fit_pointwise(
        PairSampler(logged, positive_fraction=0.5, seed=0),
        EstimatorSpec("relmf", loss="squared", normalization="weighted"),
        dim=args.dim,
        batch_size=4096,
        trainer=trainer,
        run_dir=f"{work.name}/relmf_sgd",
    )
    results["relmf_sgd_sigmoid"] = {"seconds": time.perf_counter() - started}
    results["relmf_sgd_sigmoid"] |= mar_metrics(sgd.model.score_matrix().numpy(), data.test)
    work.cleanup()

    for name, values in results.items():
        print(f"{name:20s} " + "  ".join(f"{k} {v:.4g}" for k, v in values.items()))
    peer_seconds = results["wmf_als_implicit"]["seconds"]
    print_result(
        "bench_mnar",
        "relmf_als_fit_seconds",
        results["relmf_als"]["seconds"],
        peer_seconds,
        results["relmf_als"]["seconds"] / peer_seconds,
        peer_name="implicit.cpu.als.AlternatingLeastSquares (implicit 0.7.3, CG solver)",
        wmf_als_ratio=round(results["wmf_als_ours"]["seconds"] / peer_seconds, 4),
        results={name: {k: round(v, 6) for k, v in values.items()} for name, values in results.items()},
        threads=args.threads,
        dim=args.dim,
        iterations=args.iterations,
        regularization=args.regularization,
        alpha=args.alpha,
    )


if __name__ == "__main__":
    main()
