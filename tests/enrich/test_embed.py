"""Embeddings through Beam RunInference, checked against the real bundled model."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.enrich.embed import (
    EmbedConfig,
    EmbedTexts,
    SentenceTransformerHandler,
    default_model_dir,
    embedding_text,
    model_input_limit,
)
from transforms.metrics import EMBED_NAMESPACE
from transforms.schema import EMBEDDING_DIM

TEXTS = {
    "diffusion": embedding_text(
        "Denoising Diffusion Probabilistic Models",
        "We present high quality image synthesis results using diffusion probabilistic models, "
        "a class of latent variable models inspired by nonequilibrium thermodynamics.",
    ),
    "speech": embedding_text(
        "Codec-ASR",
        "We train automatic speech recognition systems on discrete codes from neural audio "
        "codecs and compare them with mel-spectrogram features.",
    ),
    "graphs": embedding_text(
        "Variational Graph Auto-Encoders",
        "We introduce a framework for unsupervised learning on graph-structured data based on "
        "the variational auto-encoder, with a graph convolutional network encoder.",
    ),
    "unicode": "Über Lärm: ε-VAE — naïve “quotes” & 日本語 text survive tokenization.",
}


def fn_api_pipeline() -> test_pipeline.TestPipeline:
    return test_pipeline.TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"]))


@pytest.fixture(scope="module")
def reference_model():
    """The model loaded directly, as a user would: the reference for the pipeline's output."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(default_model_dir(), device="cpu")


def test_default_model_dir_holds_the_bundled_model():
    model_dir = Path(default_model_dir())
    assert (model_dir / "modules.json").is_file()
    assert (model_dir / "model.safetensors").is_file()


def test_embedding_text_joins_title_and_abstract_as_two_sentences():
    assert embedding_text("Binary Latent Diffusion", "In this paper.") == (
        "Binary Latent Diffusion. In this paper."
    )
    assert embedding_text("Is attention all you need?", "No.") == "Is attention all you need? No."
    assert embedding_text("  A&amp;B  title ", " x\u200b y ") == "A&B title. x y"
    assert embedding_text("T", "A", template="{abstract}") == "A"
    assert EmbedConfig(text_template="{abstract} {title}").text("T", "A") == "A T."


@pytest.mark.parametrize(
    "kwargs",
    [
        {"backend": "tensorflow"},
        {"batch_size": 0},
        {"encode_batch_size": 0},
        {"max_seq_length": 0},
        {"text_template": "{title} {venue}"},
    ],
)
def test_embed_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        EmbedConfig(**kwargs)


def test_handler_batches_at_the_configured_size():
    handler = SentenceTransformerHandler(EmbedConfig(batch_size=64, encode_batch_size=16))
    assert handler.batch_elements_kwargs() == {"min_batch_size": 64, "max_batch_size": 64}
    default = SentenceTransformerHandler()
    assert default.batch_elements_kwargs() == {"min_batch_size": 256, "max_batch_size": 256}
    assert default.share_model_across_processes() is False
    assert default.get_metrics_namespace() == EMBED_NAMESPACE
    assert default.get_num_bytes(["ab", "é"]) == 4


def test_handler_returns_unit_float32_vectors():
    handler = SentenceTransformerHandler(EmbedConfig(max_seq_length=128))
    model = handler.load_model()
    assert model.max_seq_length == 128
    vectors = list(handler.run_inference(list(TEXTS.values()), model))
    assert len(vectors) == len(TEXTS)
    for vector in vectors:
        assert vector.dtype == np.float32
        assert vector.shape == (EMBEDDING_DIM,)
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_embed_texts_pipeline_matches_direct_encode(reference_model):
    keys = list(TEXTS)
    expected = dict(
        zip(
            keys,
            reference_model.encode([TEXTS[k] for k in keys], normalize_embeddings=True),
            strict=True,
        )
    )

    def matches_reference(actual):
        assert sorted(key for key, _ in actual) == sorted(keys)
        for key, vector in actual:
            assert vector.dtype == np.float32 and vector.shape == (EMBEDDING_DIM,)
            assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
            assert float(vector @ expected[key]) > 0.999, key

    pipeline = fn_api_pipeline()
    pairs = [(k, TEXTS[k]) for k in keys] + [("none", None), ("blank", "   ")]
    out = pipeline | beam.Create(pairs) | EmbedTexts(EmbedConfig(batch_size=3))
    assert_that(out.embeddings, matches_reference, label="Embeddings")
    failed_keys = out.failures | beam.Map(lambda kv: kv[0])
    assert_that(failed_keys, equal_to(["none", "blank"]), label="Failures")
    result = pipeline.run()
    result.wait_until_finish()
    counters = result.metrics().query(MetricsFilter().with_name("embedded_texts"))["counters"]
    assert sum(c.committed for c in counters) == len(keys)


class _FailingHandler(SentenceTransformerHandler):
    """Raises on batches containing "boom": exercises the dead-letter plumbing, no model."""

    def load_model(self):
        return None

    def run_inference(self, batch, model, inference_args=None):
        if any("boom" in text for text in batch):
            raise RuntimeError("boom")
        return [np.ones(EMBEDDING_DIM, np.float32) / np.sqrt(EMBEDDING_DIM) for _ in batch]


def test_failed_batches_become_one_failure_per_key():
    config = EmbedConfig(batch_size=2)
    pairs = [("a", "fine"), ("b", "boom"), ("c", "fine too"), ("d", "also fine")]
    with fn_api_pipeline() as pipeline:
        out = pipeline | beam.Create(pairs) | EmbedTexts(config, handler=_FailingHandler(config))
        ok_keys = out.embeddings | "OkKeys" >> beam.Map(lambda kv: kv[0])
        failed = out.failures | "FailedKeys" >> beam.Map(lambda kv: (kv[0], "boom" in kv[1]))
        # Batches of 2 in arrival order are not guaranteed: only check the partition.
        everything = (ok_keys, failed | beam.Map(lambda kv: kv[0])) | beam.Flatten()
        assert_that(everything, equal_to(list("abcd")), label="EveryKeyOnce")
        assert_that(
            failed | "FailedHasB" >> beam.combiners.ToList(),
            lambda lists: _assert_failed_includes_b(lists[0]),
            label="FailedIncludesB",
        )


def _assert_failed_includes_b(failed: list[tuple[str, bool]]) -> None:
    assert ("b", True) in failed
    assert all(message_has_boom for _, message_has_boom in failed)


def test_a_text_the_model_cannot_take_fails_alone_not_its_batch():
    # Past the model's 512 position embeddings the real model raises on that text: the batch
    # is embedded again text by text, so only the long text fails.
    config = EmbedConfig(max_seq_length=100_000, batch_size=4)
    long_text = " ".join(f"token{i}" for i in range(900))
    pairs = [(k, TEXTS[k]) for k in sorted(TEXTS)][:3] + [("long", long_text)]
    pipeline = fn_api_pipeline()
    out = pipeline | beam.Create(pairs) | EmbedTexts(config)
    ok_keys = out.embeddings | "OkKeys" >> beam.Map(lambda kv: kv[0])
    assert_that(ok_keys, equal_to([k for k, _ in pairs[:3]]), label="Embedded")
    failed = out.failures | "Failed" >> beam.Map(lambda kv: (kv[0], kv[1].split(":")[0]))
    assert_that(failed, equal_to([("long", "embedding failed")]), label="FailedAlone")
    result = pipeline.run()
    result.wait_until_finish()
    query = MetricsFilter().with_name("batches_retried_text_by_text")
    assert sum(c.committed for c in result.metrics().query(query)["counters"]) == 1


def test_model_input_limit_reads_the_model_files(tmp_path):
    assert model_input_limit(default_model_dir()) == 512
    with pytest.raises(FileNotFoundError, match="no such directory"):
        model_input_limit(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="no modules.json"):
        model_input_limit(str(tmp_path))
    (tmp_path / "modules.json").write_text("not json")
    with pytest.raises(ValueError, match="modules.json is unreadable"):
        model_input_limit(str(tmp_path))
