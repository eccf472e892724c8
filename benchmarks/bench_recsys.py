"""LightGCN training-epoch throughput: ours (shared Trainer + LLMRecModel) vs a plain torch-geometric loop.

Peer: ``torch_geometric.nn.LightGCN`` trained by a plain loop — ``get_embedding(edge_index)`` each step and
its own ``recommendation_loss`` (BPR + L2) with AdamW — on the same MovieLens-100K training graph, the same
BPR batches (same users, positives and negatives) and the same thread count. Ours: the same LightGCN inside
:class:`domains.recsys.model.LLMRecModel` (side features off), trained for one epoch by ``shared.trainer``
(including its metrics and end-of-run checkpoint). Also measures full-ranking evaluation throughput
(users/s, train items excluded, Recall/NDCG/Precision@10/20/50).

Prints one JSON line: name, metric (training samples/s), ours, peer, ratio (ours/peer), peak_rss_mb, plus
eval_users_per_s. Usage: ``python -m benchmarks.bench_recsys [--batch-size 2048] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._report import print_result
from domains.recsys.llmrec.bpr_sampling import BprBatches
from domains.recsys.llmrec.graphs import bipartite_graph, items_by_user
from domains.recsys.llmrec.model import LLMRecModel, RecommenderConfig
from domains.recsys.llmrec.movielens import build_movielens_100k
from domains.recsys.llmrec.ranking_metrics import full_ranking_metrics
from domains.recsys.llmrec.training import default_trainer_config
from shared.trainer import Trainer, resolve_budget


def peer_epoch(data, batches: list[dict[str, torch.Tensor]], dim: int, layers: int, lr: float) -> float:
    """Seconds for one epoch of the plain torch-geometric loop."""
    from torch_geometric.nn import LightGCN

    torch.manual_seed(0)
    model = LightGCN(data.n_users + data.n_items, dim, layers)
    edge_index = bipartite_graph(data.train, data.n_users, data.n_items).edge_index
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)

    def step(batch: dict[str, torch.Tensor]) -> None:
        embedding = model.get_embedding(edge_index)
        users = embedding[batch["users"]]
        positives = embedding[data.n_users + batch["pos"]]
        negatives = embedding[data.n_users + batch["neg"]]
        node_id = torch.cat([batch["users"], data.n_users + batch["pos"], data.n_users + batch["neg"]]).unique()
        loss = model.recommendation_loss((users * positives).sum(-1), (users * negatives).sum(-1), node_id=node_id)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step(batches[0])  # warm-up (allocations, first-call overheads), not timed
    started = time.perf_counter()
    for batch in batches:
        step(batch)
    return time.perf_counter() - started


def our_epoch(data, batches: BprBatches, dim: int, layers: int, lr: float, run_dir: Path) -> tuple[float, LLMRecModel]:
    """Seconds for one epoch through the shared trainer, and the trained model."""
    torch.manual_seed(0)
    config = RecommenderConfig(
        embedding_dim=dim, num_layers=layers, use_text_features=False, use_item_attributes=False, l2_weight=1e-4
    )
    model = LLMRecModel(data.n_users, data.n_items, data.train, config)
    model(next(iter(batches(0))))["loss"].backward()  # warm-up, as for the peer
    model.zero_grad()
    # LLMRec's trainer settings for exactly one epoch, without validation (the peer has none either).
    one_epoch = dataclasses.replace(
        default_trainer_config(), lr=lr, max_epochs=1, validate_every_epochs=None, log_every=len(batches)
    )
    trainer = Trainer(model, resolve_budget(one_epoch, len(batches)), run_dir)
    started = time.perf_counter()
    trainer.fit(batches)
    return time.perf_counter() - started, model


def main(argv: list[str] | None = None) -> None:
    """Runs both epochs and the evaluation, prints one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=2048, help="BPR pairs per batch")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for both (same for fairness)")
    parser.add_argument("--dim", type=int, default=64, help="embedding width")
    parser.add_argument("--layers", type=int, default=2, help="LightGCN layers")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    data, _ = build_movielens_100k(text_features=False)
    sampler = BprBatches(data.train, data.n_items, args.batch_size, seed=0)
    batches = list(sampler(0))
    samples = sum(int(batch["users"].numel()) for batch in batches)
    peer_seconds = peer_epoch(data, batches, args.dim, args.layers, 1e-3)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as run_dir:
        our_seconds, model = our_epoch(data, sampler, args.dim, args.layers, 1e-3, Path(run_dir))
    users, items = model.user_item_embeddings()
    started = time.perf_counter()
    metrics = full_ranking_metrics(
        users,
        items,
        items_by_user(data.test, data.n_users, data.n_items),
        exclude=items_by_user(data.train, data.n_users, data.n_items),
        batch_users=256,
    )
    eval_seconds = time.perf_counter() - started
    ours, peer = samples / our_seconds, samples / peer_seconds
    print_result(
        "recsys_lightgcn_epoch",
        "train_samples_per_s",
        ours,
        peer,
        ours / peer,
        eval_users_per_s=round(metrics["users"] / eval_seconds, 1),
        peer_name="torch_geometric.nn.LightGCN plain loop (get_embedding + recommendation_loss)",
        batch_size=args.batch_size,
        threads=args.threads,
    )


if __name__ == "__main__":
    main()
