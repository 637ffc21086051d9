"""What an update must share with the output it extends: the run's result-shaping settings,
stored in the manifest, and their differences in words.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from typing import Any

from transforms.dedup.duplicates import DedupConfig
from transforms.enrich.embed import EmbedConfig
from transforms.enrich.semantic.rule import SemanticConfig
from transforms.enrich.tags.tagging import Taxonomy

# DedupConfig fields that change speed, never the result (components always finish exactly).
PERFORMANCE_ONLY = ("lsh_shards", "component_rounds")


def run_settings(
    dedup: DedupConfig,
    embed: EmbedConfig | None,
    digest_year: int | None = None,
    semantic: SemanticConfig | None = None,
    topics: Taxonomy | None = None,
) -> dict[str, Any]:
    """What an update must share with the run it extends for the result to equal one full
    run: the clustering settings, the year rule for dates, what produced the stored
    embeddings (the model named as the user gave it: the packaged default is stored as
    ``None``, so a rebuilt environment is not a different model), the semantic merge, and
    the tagging (a fingerprint of the taxonomy and its labelled examples, and which packaged
    head it adds)."""
    clustering = {k: v for k, v in asdict(dedup).items() if k not in PERFORMANCE_ONLY}
    settings: dict[str, Any] = {"dedup": _plain(clustering), "digest_year": digest_year}
    if embed is not None:
        settings["embedding"] = {
            "model": embed.model,
            "backend": getattr(embed, "backend", "torch"),
            "max_seq_length": embed.max_seq_length,
            "text_template": embed.text_template,
        }
    else:
        settings["embedding"] = None
    settings["semantic"] = None if semantic is None else semantic.settings()
    settings["tags"] = None if topics is None else _tag_settings(topics)
    return settings


def taxonomy_fingerprint(topics: Taxonomy) -> str:
    """Identity of a taxonomy with its examples (a frozen dataclass: its repr is its value)."""
    return hashlib.sha256(repr(topics).encode("utf-8")).hexdigest()[:16]


def _tag_settings(topics: Taxonomy) -> dict[str, Any]:
    tags: dict[str, Any] = {"taxonomy": taxonomy_fingerprint(topics)}
    if topics.packaged_head is not None:  # absent, not None: outputs from before it compare equal
        tags["head"] = f"packaged {topics.packaged_head[:16]} (--tag_head)"
    return tags


def _plain(value: Any) -> Any:
    """JSON-comparable form (tuples become lists, as after a JSON round trip)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def settings_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences between two :func:`run_settings` documents, one per
    changed leaf setting (``dedup.minhash.threshold: 0.8 -> 0.7``)."""
    old, new = _leaves(stored), _leaves(current)
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]


def _leaves(document: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(document, dict) or not document:
        return {prefix: document}
    leaves: dict[str, Any] = {}
    for key, value in document.items():
        leaves.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return leaves
