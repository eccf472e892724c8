"""Quiet library chatter in commands and the demo, keeping the progress bars of long work.

What the libraries print on a normal run and what we do about it:

- transformers' "LOAD REPORT" table (unexpected/missing keys, with raw colour codes) when a tower loads
  part of a checkpoint on purpose: logged at WARNING by ``transformers``; its verbosity goes to ERROR.
- transformers' per-model "Loading weights" bars: its own tqdm switch is turned off (as with
  ``HF_HUB_DISABLE_PROGRESS_BARS=1``); our training, featurizing and ingest bars use tqdm directly and stay.
- open_clip's ``WARNING:root:Model … initialized partially.``: expected when a text tower is built
  without pretrained weights; that one message is dropped from the root logger.
- FutureWarnings raised inside torch, torch_geometric, open_clip, timm, transformers and huggingface_hub
  (``torch.jit.script``, ``all_gather`` …): nothing a user of the suite can act on; our own code's
  FutureWarnings still show.

``--debug`` on a command (or ``DOMAIN_CLIP_VERBOSE=1``) leaves everything as the libraries print it.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

#: Libraries whose FutureWarnings are silenced (matched against the warning's module).
NOISY_LIBRARIES = ("torch", "torch_geometric", "open_clip", "timm", "transformers", "huggingface_hub", "accelerate")

#: FutureWarnings silenced wherever they are attributed (regular expressions matched at the message start).
FUTURE_WARNING_MESSAGES = (r".*torch\.jit\.script", r".*all_gather", r".*torch\.cuda\.amp", r".*`torch\.load`")

#: Root-logger messages dropped (substring match): expected, and not actionable by the user.
DROPPED_ROOT_MESSAGES = ("initialized partially",)

VERBOSE_VARIABLE = "DOMAIN_CLIP_VERBOSE"


class _DropExpectedMessages(logging.Filter):
    """Drops root-logger records whose message contains one of :data:`DROPPED_ROOT_MESSAGES`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in DROPPED_ROOT_MESSAGES)


_DROP_FILTER = _DropExpectedMessages()


def silence_library_chatter(verbose: bool = False) -> None:
    """Silences the library messages listed in the module docstring, in this process and its children.

    Safe to call more than once and before or after the libraries are imported: environment variables
    reach libraries imported later (and subprocesses), and already imported ones are switched directly.

    Args:
        verbose: Leave everything as the libraries print it (``--debug``); also when
            ``$DOMAIN_CLIP_VERBOSE`` is ``1``.
    """
    if verbose or os.environ.get(VERBOSE_VARIABLE) == "1":
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    pattern = r"(" + "|".join(NOISY_LIBRARIES) + r")(\.|$)"
    warnings.filterwarnings("ignore", category=FutureWarning, module=pattern)
    # Raised by torch on behalf of a library but attributed to the library's caller (stacklevel), so
    # matched by message: torch_geometric's torch.jit.script, open_clip's loss gathering.
    for message in FUTURE_WARNING_MESSAGES:
        warnings.filterwarnings("ignore", message=message, category=FutureWarning)
    root = logging.getLogger()
    if _DROP_FILTER not in root.filters:
        root.addFilter(_DROP_FILTER)
    transformers_logging = sys.modules.get("transformers.utils.logging")
    if transformers_logging is not None:
        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
    hub_utils = sys.modules.get("huggingface_hub.utils")
    if hub_utils is not None and hasattr(hub_utils, "disable_progress_bars"):
        hub_utils.disable_progress_bars()
