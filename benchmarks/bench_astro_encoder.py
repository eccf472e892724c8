"""Photometry-encoder training throughput: our Informer (ProbSparse) vs a plain torch TransformerEncoder.

Both encoders have the paper's size (8 layers, d_model 128, 4 heads, d_ff 512, GELU, post-norm), take the
same (B, 200, 9) light-curve windows through the same token embedding, and train one step at a time with
the same flattened linear head and cross-entropy on 10 classes. Steps alternate between the two models
so that machine noise hits both alike. Prints one JSON line (``ratio`` = ours / peer samples per second).

    python -m benchmarks.bench_astro_encoder [--batch-size 64] [--steps 6] [--attention prob]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from benchmarks._report import print_result
from domains.astro.model import InformerPhotometryEncoder


class PlainTransformerPhotometryEncoder(nn.Module):
    """The same-size peer: our token embedding + ``torch.nn.TransformerEncoder`` (full attention)."""

    def __init__(self, reference: InformerPhotometryEncoder, n_layers: int, n_heads: int, d_ff: int) -> None:
        super().__init__()
        d_model = reference.d_model
        self.token_embedding = nn.Conv1d(9, d_model, 3, padding=1, padding_mode="circular", bias=False)
        self.register_buffer("positions", reference.positions.clone(), persistent=False)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, d_ff, dropout=0.1, activation="gelu", batch_first=True, norm_first=False
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        self.output_dim = reference.output_dim

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        values, mask = batch["values"], batch["mask"]
        hidden = self.token_embedding(values.transpose(1, 2)).transpose(1, 2) + self.positions
        hidden = self.encoder(hidden) * mask.unsqueeze(-1)
        return hidden.flatten(1)


def train_step(encoder: nn.Module, head: nn.Module, optimizer: torch.optim.Optimizer, batch: dict) -> float:
    """One optimizer step; returns its wall time in seconds."""
    started = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    logits = head(encoder(batch["photometry"]))
    nn.functional.cross_entropy(logits, batch["label"]).backward()
    optimizer.step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Run the comparison and print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=64, help="light curves per training step")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per model (after 2 warm-up steps)")
    parser.add_argument("--attention", choices=["prob", "full"], default="prob", help="our attention kind")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ours = InformerPhotometryEncoder(dropout=0.1, attention=args.attention).to(device)
    peer = PlainTransformerPhotometryEncoder(ours, n_layers=8, n_heads=4, d_ff=512).to(device)
    models = {}
    for name, encoder in (("ours", ours), ("peer", peer)):
        head = nn.Linear(encoder.output_dim, 10).to(device)
        optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=1e-4)
        models[name] = (encoder.train(), head, optimizer)
    batch = {
        "photometry": {
            "values": torch.randn(args.batch_size, 200, 9, device=device),
            "mask": torch.ones(args.batch_size, 200, dtype=torch.bool, device=device),
        },
        "label": torch.randint(10, (args.batch_size,), device=device),
    }
    timings: dict[str, list[float]] = {"ours": [], "peer": []}
    for step in range(args.steps + 2):
        for name, (encoder, head, optimizer) in models.items():
            seconds = train_step(encoder, head, optimizer, batch)
            if step >= 2:
                timings[name].append(seconds)
    rates = {name: args.batch_size * len(times) / sum(times) for name, times in timings.items()}
    return print_result(
        "astro_photometry_encoder_training",
        "samples_per_s",
        rates["ours"],
        rates["peer"],
        rates["ours"] / rates["peer"],
        peer_name="torch.nn.TransformerEncoder (same size, full attention)",
        attention=args.attention,
        batch_size=args.batch_size,
        device=device.type,
    )


if __name__ == "__main__":
    main()
