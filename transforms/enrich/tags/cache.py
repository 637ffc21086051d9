"""The on-disk cache of embedded prototype texts, so a run does not embed the taxonomy again.

Every tagged run embeds the same prototype texts (and tag examples) with the same model; the
vectors depend on nothing else. They are kept in one ``.npy`` file per (model files, backend,
max_seq_length, texts), named by a digest of all of them, so any change to the model, the
backend, the truncation or a single text is a different file, never a stale hit. Files are
written whole and renamed into place, so a reader sees a complete file or none, and a damaged
one is a miss (re-embedded and rewritten), never an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from transforms.enrich.embed import EmbedConfig
from transforms.enrich.encoders import model_fingerprint


def cache_file(directory: str, config: EmbedConfig, texts: Sequence[str]) -> Path:
    """The cache file for ``texts`` embedded under ``config``."""
    digest = hashlib.sha256()
    key = {
        "model": model_fingerprint(config.model_dir),
        "backend": config.backend,
        "max_seq_length": config.max_seq_length,
    }
    digest.update(json.dumps(key, sort_keys=True).encode())
    for text in texts:
        digest.update(b"\x00" + text.encode("utf-8"))
    return Path(directory) / f"prototypes-{digest.hexdigest()[:32]}.npy"


def load_vectors(path: Path, count: int) -> np.ndarray | None:
    """The cached (count x dim) float32 vectors, or None if the file is absent or unusable."""
    try:
        vectors = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if vectors.ndim != 2 or vectors.shape[0] != count or vectors.dtype != np.float32:
        return None
    return vectors


def store_vectors(path: Path, vectors: np.ndarray) -> None:
    """Write ``vectors`` to ``path`` atomically; a cache that cannot be written is skipped
    (a read-only home directory must not fail a run)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(handle, "wb") as stream:
            np.save(stream, np.asarray(vectors, dtype=np.float32), allow_pickle=False)
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
