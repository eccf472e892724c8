"""The user–item interaction graph and the user × item membership matrix built from ``(user, item)`` pairs."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch


def import_torch_geometric() -> None:
    """Imports torch_geometric without its ``torch.jit.script`` deprecation warning.

    The warning concerns torch_geometric's own code, not ours; left alone it lands on stderr before a
    command's one-line error message.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning)
        import torch_geometric  # noqa: F401


def bipartite_graph(pairs: np.ndarray, n_users: int, n_items: int) -> Any:
    """The user–item interaction graph as an undirected ``torch_geometric.data.Data``.

    Nodes ``0..n_users-1`` are users and ``n_users..n_users+n_items-1`` items; each ``(user, item)`` pair
    becomes two directed edges, as ``torch_geometric.nn.LightGCN`` expects.
    """
    import_torch_geometric()
    from torch_geometric.data import Data

    pairs = torch.as_tensor(np.asarray(pairs, dtype=np.int64)).reshape(-1, 2)
    users, items = pairs[:, 0], pairs[:, 1] + n_users
    edge_index = torch.stack([torch.cat([users, items]), torch.cat([items, users])])
    return Data(edge_index=edge_index, num_nodes=n_users + n_items)


def items_by_user(pairs: np.ndarray, n_users: int, n_items: int) -> Any:
    """The (n_users × n_items) boolean scipy CSR matrix of ``(user, item)`` pairs."""
    from scipy.sparse import csr_matrix

    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    values = np.ones(len(pairs), dtype=bool)
    matrix = csr_matrix((values, (pairs[:, 0], pairs[:, 1])), shape=(n_users, n_items), dtype=bool)
    matrix.sum_duplicates()
    return matrix
