"""Sentence encoders for :mod:`transforms.enrich.embed`: the sentence-transformers model on torch, or
the same model exported once to ONNX and run by ONNX Runtime (fp32 or dynamic int8) or
OpenVINO (fp32, or statically quantized to int8 by NNCF on a packaged calibration set).

Why not sentence-transformers' own ``backend="onnx"``: it needs ``optimum-onnx``, whose
releases pin ``transformers<5`` and ``huggingface_hub<1``, which sentence-transformers 6
refuses, so ``sentence-transformers[onnx]`` does not install next to it (measured with
``pip install --dry-run``). The transformer is therefore exported here with
``torch.onnx.export`` (torch is installed anyway) and run by ``onnxruntime`` or ``openvino``
directly; tokenization (the model's ``tokenizer.json``), mean/CLS pooling and normalization
are reimplemented in a few lines and checked against the torch model (cosine > 0.999, tests).

The exported file goes to a cache directory, never next to the model (a package directory
may be read-only, e.g. on Dataflow workers): ``<cache_dir>/onnx/<model>-<fingerprint>/``,
where the fingerprint hashes the model's config, tokenizer and weights and
:data:`EXPORT_VERSION`. Each process that needs it exports it once if missing (a few
seconds); concurrent exports write temporary files and rename them into place atomically.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib.util
import inspect
import io
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BACKENDS = ("torch", "onnx", "onnx-int8", "openvino", "openvino-int8")
# The command line offers the backends whose vectors equal torch's (cosine >= 0.99999), and
# openvino-int8: on the seed papers and the hand-written revisions it merges exactly the
# revisions fp32 merges, with no false merge, and keeps the topic F1 (docs/benchmarks.md).
# onnx-int8 (dynamic) moves pairwise cosines about twice as much: library and bench only.
CLI_BACKENDS = ("torch", "onnx", "openvino", "openvino-int8")
# The default: the fastest backend whose vectors equal torch fp32 (cosine >= 0.9999 on every
# text; docs/benchmarks.md). Its runtime is a core dependency; torch stays a choice.
DEFAULT_BACKEND = "openvino"
# Bump when the export (graph inputs/outputs, opset, quantization) changes: new cache entries.
EXPORT_VERSION = 1
ONNX_OPSET = 17
_HASHED_FILES = ("config.json", "tokenizer.json", "model.safetensors", "pytorch_model.bin")
_MODULE_KINDS = ("Transformer", "Pooling", "Normalize")


# The modules each backend imports beyond the core install, and the extra that brings them.
_RUNTIME_MODULES = {
    "torch": ((), ""),
    "onnx": (("onnxruntime",), "onnx"),
    "onnx-int8": (("onnxruntime", "onnx"), "onnx"),
    "openvino": (("openvino",), "openvino"),
    "openvino-int8": (("openvino", "nncf"), ""),
}
# The static int8 model's calibration set: generated paper texts (bench/calibration.py writes
# it from the synthetic generator; no real abstract), quantized in batches of this size.
CALIBRATION_FILE = Path(__file__).with_name("int8_calibration.json.gz")
CALIBRATION_BATCH = 8


def missing_runtime(backend: str) -> str | None:
    """None if ``backend`` can run here, else what to install (checked before a run starts,
    so a missing package is one clear error instead of a failed worker)."""
    modules, extra = _RUNTIME_MODULES[backend]
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    # a core dependency missing (a partial install) is reinstalled by its own name
    install = f"'digestflow[{extra}]'" if extra else " ".join(missing)
    return f"--embedding_backend {backend} needs {', '.join(missing)}: pip install {install}"


def default_cache_dir() -> Path:
    """``~/.cache/digestflow``: where exported models are kept (see :class:`EmbedConfig`)."""
    return Path.home() / ".cache" / "digestflow"


# --------------------------------------------------------------------------- model layout


@dataclass(frozen=True)
class PoolingSpec:
    """What follows the transformer in a sentence-transformers model we can run on ONNX."""

    mode: str  # "mean" or "cls"
    normalize: bool


def read_pooling_spec(model_dir: str | Path) -> PoolingSpec:
    """Pooling of a Transformer -> Pooling [-> Normalize] model, from its ``modules.json``.

    Anything else (Dense layers, max pooling, ...) is refused with a clear error rather than
    embedded differently from the torch backend.
    """
    model_dir = Path(model_dir)
    modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
    kinds = [module["type"].rsplit(".", 1)[-1] for module in modules]
    if kinds not in (list(_MODULE_KINDS[:2]), list(_MODULE_KINDS)):
        raise ValueError(
            f"{model_dir}: ONNX backends support Transformer -> Pooling [-> Normalize] models "
            f"only, this one has {kinds}; use --embedding_backend torch"
        )
    pooling_path = model_dir / modules[1].get("path", "1_Pooling") / "config.json"
    pooling = json.loads(pooling_path.read_text(encoding="utf-8"))
    modes = [key for key, on in pooling.items() if key.startswith("pooling_mode_") and on]
    mode = {
        ("pooling_mode_mean_tokens",): "mean",
        ("pooling_mode_cls_token",): "cls",
    }.get(tuple(modes))
    if mode is None:
        raise ValueError(
            f"{pooling_path}: ONNX backends support mean or CLS pooling, not {modes}; "
            "use --embedding_backend torch"
        )
    return PoolingSpec(mode, normalize=len(kinds) == 3)


def model_fingerprint(model_dir: str | Path) -> str:
    """Hex digest of the files that determine the exported graph, plus the export version."""
    digest = hashlib.sha256(f"digestflow-export-{EXPORT_VERSION}-opset{ONNX_OPSET}".encode())
    for name in _HASHED_FILES:
        path = Path(model_dir) / name
        if not path.is_file():
            continue
        digest.update(name.encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def exported_model_path(model_dir: str | Path, cache_dir: str | Path, quantized: bool) -> Path:
    """Where the ONNX export of ``model_dir`` lives in ``cache_dir``."""
    name = Path(model_dir).resolve().name
    if name == "model":  # packaged models sit in <package>/model: name them by the package
        name = Path(model_dir).resolve().parent.name
    folder = Path(cache_dir) / "onnx" / f"{name}-{model_fingerprint(model_dir)[:16]}"
    return folder / ("model_int8.onnx" if quantized else "model.onnx")


def static_int8_path(model_dir: str | Path, cache_dir: str | Path) -> Path:
    """Where the OpenVINO int8 model of ``model_dir`` lives: beside its ONNX export, in a
    folder keyed by the calibration set and the NNCF version too (either changes the model)."""
    import nncf

    digest = hashlib.sha256(CALIBRATION_FILE.read_bytes())
    digest.update(f"nncf-{nncf.__version__}-batch{CALIBRATION_BATCH}".encode())
    folder = exported_model_path(model_dir, cache_dir, quantized=False).parent
    return folder / f"openvino-int8-{digest.hexdigest()[:16]}" / "model.xml"


def calibration_texts() -> list[str]:
    """The packaged calibration texts (already in the embedding template's form)."""
    with gzip.open(CALIBRATION_FILE, "rt", encoding="utf-8") as fh:
        return json.load(fh)["texts"]


# --------------------------------------------------------------------------- export


def _atomic_target(target: Path) -> Path:
    """A scratch file beside ``target`` (same file system, so ``os.replace`` is atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.fchmod(handle, 0o644)  # mkstemp makes 0600; other users of a shared cache read it
    os.close(handle)
    return Path(name)


def export_onnx(model_dir: str | Path, target: Path) -> Path:
    """Export the model's transformer (token ids -> last hidden state) to ``target``.

    Traced with a padded batch, so the attention-mask path is part of the graph; batch and
    sequence axes are dynamic. Written to a temporary file, then renamed into place.
    """
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    with_types = "token_type_ids" in inspect.signature(model.forward).parameters
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if with_types else [])

    class HiddenStates(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(names, inputs, strict=True))).last_hidden_state

    ids = torch.full((2, 16), 100, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    example = (ids, mask, torch.zeros_like(ids))[: len(names)]
    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, "last_hidden_state"]}
    scratch = _atomic_target(target)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer and legacy-exporter notices
            torch.onnx.export(
                HiddenStates().eval(),
                example,
                str(scratch),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
        os.replace(scratch, target)
    finally:
        scratch.unlink(missing_ok=True)
    return target


def quantize_onnx(source: Path, target: Path) -> Path:
    """Dynamic int8 quantization of ``source``: the weight matrices of the MatMuls, per output
    channel; activations are quantized per batch at run time.

    Measured on 64 generated abstracts (cosine to fp32): the ORT defaults (per-tensor, also
    Gather and activation x activation MatMuls) 0.93 mean / 0.91 min; per-channel 0.994 / 0.990;
    per-channel MatMul weights only (this) 0.994 / 0.992 and the fastest.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    scratch = _atomic_target(target)
    try:
        quantize_dynamic(
            str(source),
            str(scratch),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            extra_options={"MatMulConstBOnly": True},
        )
        os.replace(scratch, target)
    finally:
        scratch.unlink(missing_ok=True)
    return target


def quantize_openvino(source: Path, target: Path, model_dir: str | Path) -> Path:
    """Static int8 quantization of the ONNX export ``source`` with NNCF into ``target``
    (``model.xml`` + ``model.bin``): activation ranges come from the packaged calibration
    texts, tokenized as the encoder tokenizes (``ModelType.TRANSFORMER`` keeps softmax,
    layer norm and the attention's score MatMuls in fp32; ``MIXED``: symmetric weights,
    asymmetric activations). Deterministic: the same inputs give the same weights file.

    Written into a scratch folder beside ``target``'s folder, then renamed into place; a
    concurrent quantization that got there first wins and this one's copy is dropped.
    """
    import nncf
    import openvino as ov

    texts = calibration_texts()
    tokenizer = _tokenizer(Path(model_dir))
    tokenizer.enable_truncation(max_length=256)
    model = ov.Core().read_model(str(source))
    names = {port.get_any_name() for port in model.inputs}
    batches = []
    for start in range(0, len(texts), CALIBRATION_BATCH):
        batch = token_arrays(tokenizer, texts[start : start + CALIBRATION_BATCH])
        batches.append({name: value for name, value in batch.items() if name in names})
    # NNCF draws progress bars on the console (rich, no switch to turn them off) and logs
    # notices: neither belongs in a pipeline's output, so both are kept out of it.
    nncf.set_log_level(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        quantized = nncf.quantize(
            model,
            nncf.Dataset(batches),
            model_type=nncf.ModelType.TRANSFORMER,
            preset=nncf.QuantizationPreset.MIXED,
            subset_size=len(batches),
        )
    folder = target.parent
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        ov.save_model(quantized, str(scratch / target.name))
        os.chmod(scratch, 0o755)  # mkdtemp makes 0700; other users of a shared cache read it
        try:
            os.replace(scratch, folder)
        except OSError:
            if not target.is_file():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def ensure_static_int8(model_dir: str | Path, cache_dir: str | Path) -> Path:
    """The cached OpenVINO int8 model of ``model_dir``, exporting and quantizing it first if
    missing (~10 s on 2 cores)."""
    target = static_int8_path(model_dir, cache_dir)
    if not target.is_file():
        quantize_openvino(ensure_exported(model_dir, cache_dir, False), target, model_dir)
    return target


def ensure_exported(model_dir: str | Path, cache_dir: str | Path, quantized: bool) -> Path:
    """The cached ONNX file for ``model_dir``, exporting (and quantizing) it first if missing."""
    fp32 = exported_model_path(model_dir, cache_dir, quantized=False)
    if not fp32.is_file():
        export_onnx(model_dir, fp32)
    if not quantized:
        return fp32
    int8 = exported_model_path(model_dir, cache_dir, quantized=True)
    if not int8.is_file():
        quantize_onnx(fp32, int8)
    return int8


def ensure_model_file(model_dir: str | Path, backend: str, cache_dir: str | Path) -> Path:
    """The cached model file an ONNX or OpenVINO ``backend`` runs, made first if missing."""
    if backend == "openvino-int8":
        return ensure_static_int8(model_dir, cache_dir)
    return ensure_exported(model_dir, cache_dir, quantized=backend == "onnx-int8")


# --------------------------------------------------------------------------- inference


def pool(hidden: np.ndarray, mask: np.ndarray, spec: PoolingSpec) -> np.ndarray:
    """Sentence vectors from token states (batch x tokens x dim) and the attention mask."""
    if spec.mode == "cls":
        vectors = hidden[:, 0]
    else:
        weights = mask[..., None].astype(np.float32)
        vectors = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    if spec.normalize:
        vectors = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    return vectors.astype(np.float32)


def length_order(texts: Sequence[str]) -> np.ndarray:
    """Longest first, as sentence-transformers does, so each batch pads little."""
    return np.argsort([-len(text) for text in texts], kind="stable")


class OnnxEncoder:
    """A ``SentenceTransformer.encode`` look-alike over an exported transformer.

    ``infer`` maps the named int64 inputs to the last hidden state; it is ONNX Runtime's or
    OpenVINO's, see :func:`load_encoder`. Thread-safe: Beam may call ``encode`` from
    several threads of one worker process.
    """

    def __init__(
        self,
        infer: Callable[[Mapping[str, np.ndarray]], np.ndarray],
        tokenizer: Any,
        input_names: Sequence[str],
        pooling: PoolingSpec,
        max_seq_length: int,
    ) -> None:
        self._infer = infer
        self._tokenizer = tokenizer
        self._input_names = tuple(input_names)
        self._pooling = pooling
        self._lock = threading.Lock()  # the tokenizer's truncation setting is shared state
        self.max_seq_length = max_seq_length

    def _tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        with self._lock:
            self._tokenizer.enable_truncation(max_length=self.max_seq_length)
            return token_arrays(self._tokenizer, texts)

    def encode(
        self,
        sentences: Sequence[str],
        batch_size: int = 32,
        normalize_embeddings: bool = False,
        convert_to_numpy: bool = True,
        show_progress_bar: bool = False,
        **_: Any,
    ) -> np.ndarray:
        order = length_order(sentences)
        out = np.zeros((len(sentences), 0), dtype=np.float32)
        for start in range(0, len(sentences), batch_size):
            index = order[start : start + batch_size]
            tokens = self._tokenize([sentences[i] for i in index])
            hidden = self._infer({name: tokens[name] for name in self._input_names})
            vectors = pool(hidden, tokens["attention_mask"], self._pooling)
            if out.shape[1] == 0:
                out = np.zeros((len(sentences), vectors.shape[1]), dtype=np.float32)
            out[index] = vectors
        if normalize_embeddings and len(out):
            out /= np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
        return out


def token_arrays(tokenizer: Any, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """The model's int64 inputs for ``texts`` (padded to the longest, truncated as the
    tokenizer is set): what inference and the int8 calibration both feed the graph."""
    encodings = tokenizer.encode_batch(list(texts))
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }


def _tokenizer(model_dir: Path) -> Any:
    from tokenizers import Tokenizer

    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise ValueError(f"{model_dir}: ONNX backends need a fast tokenizer (tokenizer.json)")
    tokenizer = Tokenizer.from_file(str(path))
    special = model_dir / "special_tokens_map.json"
    pad_token = "[PAD]"
    if special.is_file():
        value = json.loads(special.read_text(encoding="utf-8")).get("pad_token", pad_token)
        pad_token = value["content"] if isinstance(value, dict) else value
    pad_id = tokenizer.token_to_id(pad_token)
    tokenizer.enable_padding(pad_id=pad_id or 0, pad_token=pad_token)
    return tokenizer


def _onnxruntime_infer(path: Path) -> tuple[Callable, list[str]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # No busy-waiting between runs: the Python work between batches (tokenizing, Beam) and
    # other processes on the worker get the cores (measured slightly faster on 2 shared cores).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [node.name for node in session.get_inputs()]
    return (lambda inputs: session.run(None, dict(inputs))[0]), names


def _openvino_infer(path: Path) -> tuple[Callable, list[str]]:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    # f32 on purpose: OpenVINO would pick bf16 on CPUs that have it, which changes vectors.
    compiled = core.compile_model(
        model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    )
    names = [port.get_any_name() for port in compiled.inputs]
    output = compiled.output(0)

    def infer(inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        request = compiled.create_infer_request()  # one per call: requests are not shared
        return request.infer(dict(inputs))[output]

    return infer, names


def load_encoder(
    model_dir: str,
    backend: str,
    max_seq_length: int,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
) -> Any:
    """An object with ``encode(texts, batch_size=..., normalize_embeddings=...)`` and a
    settable ``max_seq_length``: a ``SentenceTransformer`` (torch) or an :class:`OnnxEncoder`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(model_dir, device=device, local_files_only=True)
        model.max_seq_length = max_seq_length
        return model
    if cache_dir is not None:
        path = ensure_model_file(model_dir, backend, cache_dir)
    else:
        try:
            path = ensure_model_file(model_dir, backend, default_cache_dir())
        except OSError:  # no writable home (some containers): the temp directory will do
            path = ensure_model_file(model_dir, backend, Path(tempfile.gettempdir()) / "digestflow")
    runtime = _openvino_infer if backend.startswith("openvino") else _onnxruntime_infer
    infer, names = runtime(path)
    return OnnxEncoder(
        infer, _tokenizer(Path(model_dir)), names, read_pooling_spec(model_dir), max_seq_length
    )
