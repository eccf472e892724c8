"""Opening the pickles of LLMRec's released layout without running code from them.

Pickles can run arbitrary code when loaded; :func:`load_restricted_pickle` rebuilds only plain containers,
numbers, strings and numpy arrays and refuses everything else (classes, functions, torch tensors, scipy
matrices).
"""

from __future__ import annotations

import pickle  # noqa: S403  (only used through the restricted unpickler below)
from pathlib import Path
from typing import Any, BinaryIO

from domains.recsys.recbole_io import DataFormatError

_ALLOWED_PICKLE_GLOBALS = {
    ("builtins", "dict"),
    ("builtins", "list"),
    ("builtins", "tuple"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "int"),
    ("builtins", "float"),
    ("builtins", "complex"),
    ("builtins", "str"),
    ("builtins", "bytes"),
    ("builtins", "bytearray"),
    ("builtins", "bool"),
    ("collections", "OrderedDict"),
    ("collections", "defaultdict"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, handle: BinaryIO, source: Path) -> None:
        super().__init__(handle)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise DataFormatError(
            f"{self._source}: refusing to unpickle {module}.{name}; only plain containers, numbers, strings and "
            "numpy arrays are accepted (convert the file to JSON/.npy, e.g. torch tensors with .numpy())"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise DataFormatError(f"{self._source}: refusing to unpickle a persistent object (torch.save format?)")


def load_restricted_pickle(path: str | Path) -> Any:
    """Loads a pickle that may only contain plain containers, numbers, strings and numpy arrays.

    Args:
        path: The pickle file.

    Returns:
        The rebuilt object.

    Raises:
        DataFormatError: The file holds a disallowed type or is not a valid pickle.
    """
    path = Path(path)
    with path.open("rb") as handle:
        try:
            return _RestrictedUnpickler(handle, path).load()
        except DataFormatError:
            raise
        except Exception as error:  # pickle raises many unrelated types for corrupt input
            raise DataFormatError(f"{path}: not a valid pickle ({type(error).__name__}: {error})") from error
