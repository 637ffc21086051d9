"""``make bench`` section ``embeddings``: what the model stage costs and how well it tags.

* The whole pipeline (parse, dedup, embed, tag, write) on generated dumps against a plain
  ``SentenceTransformer.encode`` of the same canonical texts, in the same process, same run.
* Topic-tag micro precision/recall/F1 on the labelled seed papers (tests/data), when the
  seed dumps are present.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from beam_jobs import catalog
from beam_jobs.pipeline import run as run_pipeline
from transforms.embed import EmbedConfig, embedding_text

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"


def pipeline_vs_encode(data: Path, output: Path) -> dict[str, Any]:
    started = time.perf_counter()
    summary = run_pipeline([f"--input={data}/*.txt*", f"--output={output}", "--overwrite"])
    pipeline_seconds = time.perf_counter() - started
    assert summary is not None
    _, rows = catalog.query(
        str(output), "SELECT title, abstract FROM records WHERE is_canonical ORDER BY record_id"
    )
    from sentence_transformers import SentenceTransformer

    config = EmbedConfig()
    started = time.perf_counter()
    model = SentenceTransformer(config.model_dir, device="cpu")
    model.max_seq_length = config.max_seq_length
    model.encode(
        [embedding_text(t, a, config.text_template) for t, a in rows],
        batch_size=config.encode_batch_size,
        normalize_embeddings=True,
    )
    encode_seconds = time.perf_counter() - started
    return {
        "records": summary["records_parsed"],
        "canonical_texts": len(rows),
        "embedded_texts": summary["embedded_texts"],
        "pipeline_s": round(pipeline_seconds, 1),
        "encode_s": round(encode_seconds, 1),
        "ratio": round(pipeline_seconds / encode_seconds, 2),
        "texts_per_s_encode": round(len(rows) / encode_seconds, 1),
    }


def tag_quality() -> dict[str, Any] | None:
    if not SEEDS.is_dir():
        return None
    from transforms.tags import evaluate_on_seeds

    return evaluate_on_seeds(SEEDS)
