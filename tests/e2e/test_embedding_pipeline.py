"""Embeddings and tags through the whole pipeline, on the real model (small input)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from beam_jobs.cli.main import main
from beam_jobs.launcher import run
from beam_jobs.query import catalog
from beam_jobs.synthetic.generator import GeneratorConfig, generate
from transforms.enrich.embed import EmbedConfig, embedding_text


@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory) -> Path:
    dumps = tmp_path_factory.mktemp("dumps")
    generate(dumps, GeneratorConfig(records=80, seed=11, records_per_file=40))
    output = tmp_path_factory.mktemp("run") / "out"
    summary = run([f"--input={dumps}/*.txt", f"--output={output}"])
    assert summary is not None
    (clusters,) = catalog.query(str(output), "SELECT count(*) FROM clusters")[1][0]
    assert summary["embedded_texts"] == clusters, "each cluster's canonical text embedded once"
    assert summary["embedding_failures"] == 0
    return output


def test_stored_embedding_equals_plain_encode(embedded_run: Path) -> None:
    columns, rows = catalog.query(
        str(embedded_run),
        "SELECT title, abstract, embedding FROM records WHERE is_canonical ORDER BY record_id LIMIT 5",
    )
    config = EmbedConfig()
    model = SentenceTransformer(config.model_dir, device="cpu")
    model.max_seq_length = config.max_seq_length
    texts = [embedding_text(title, abstract) for title, abstract, _ in rows]
    expected = model.encode(texts, normalize_embeddings=True)
    for (_, _, stored), want in zip(rows, expected, strict=True):
        stored = np.asarray(stored, dtype=np.float32)
        assert stored.shape == (384,)
        assert abs(np.linalg.norm(stored) - 1.0) < 1e-4
        assert float(stored @ want) > 0.999


def test_duplicates_share_the_canonical_vector_and_tags(embedded_run: Path) -> None:
    (differs,) = catalog.query(
        str(embedded_run),
        "SELECT count(*) FROM records r JOIN records c ON r.duplicate_of = c.record_id "
        "WHERE r.embedding <> c.embedding OR r.tags <> c.tags",
    )[1][0]
    assert differs == 0
    (untagged,) = catalog.query(
        str(embedded_run), "SELECT count(*) FROM records WHERE len(tags) = 0"
    )[1][0]
    assert untagged == 0, "every paper gets at least one tag"


def test_similar_finds_a_paper_by_its_own_title(embedded_run: Path, capsys) -> None:
    (title,) = catalog.query(
        str(embedded_run), "SELECT title FROM papers ORDER BY record_id LIMIT 1"
    )[1][0]
    assert main(["similar", str(embedded_run), title, "-k", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2].startswith(title[:40])


def test_similar_embeds_the_query_with_the_backend_the_output_used(tmp_path, monkeypatch, capsys):
    """An output embedded by openvino-int8 is searched with int8 query vectors: a paper's own
    text then scores the cosine the int8 encoder gives it (fp32 would give another), and the
    search needs no torch model."""
    pytest.importorskip("nncf")
    from transforms.enrich.encoders import load_encoder

    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # its own model cache
    dumps, output = tmp_path / "dumps", tmp_path / "out"
    generate(dumps, GeneratorConfig(records=30, seed=13, records_per_file=30))
    assert (
        run(
            [
                f"--input={dumps}/*.txt",
                f"--output={output}",
                "--quiet",
                "--embedding_backend=openvino-int8",
            ]
        )
        is not None
    )
    (title, abstract, stored), *_ = catalog.query(
        str(output), "SELECT title, abstract, embedding FROM papers ORDER BY record_id LIMIT 1"
    )[1]
    query = embedding_text(title, abstract)
    int8 = load_encoder(EmbedConfig().model_dir, "openvino-int8", 256)
    fp32 = load_encoder(EmbedConfig().model_dir, "openvino", 256)
    stored = np.asarray(stored, dtype=np.float64)
    cosine = {
        name: round(float(model.encode([query], normalize_embeddings=True)[0] @ stored), 4)
        for name, model in (("int8", int8), ("fp32", fp32))
    }
    assert cosine["int8"] != cosine["fp32"], "the test tells the backends apart"
    capsys.readouterr()
    assert (
        main(
            [
                "similar",
                str(output),
                query,
                "-k",
                "1",
            ]
        )
        == 0
    )
    top = capsys.readouterr().out.splitlines()[2]
    assert top.startswith(title[:40]) and float(top.split()[-1]) == cosine["int8"], top
