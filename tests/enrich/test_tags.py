"""Topic tags, paper-type rules, the taxonomy file and the labelled seed set."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import tomllib
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that

from bench.tags import read_seed_papers
from transforms.enrich.embed import EmbedConfig
from transforms.enrich.tags.cache import cache_file, load_vectors, store_vectors
from transforms.enrich.tags.calibration import calibrate, evaluate_tags
from transforms.enrich.tags.evaluation import (
    cross_validate,
    cross_validate_few_shot,
    load_labels,
    title_key,
)
from transforms.enrich.tags.head import (
    EXAMPLE_KEY,
    build_tag_model,
    fit_tag_head,
    label_matrix,
    out_of_fold_predictions,
)
from transforms.enrich.tags.scoring import (
    assign_topics,
    build_prototypes,
    paper_type_tags,
    predict_topics,
    prototype_pairs,
    tag_paper,
    tag_scores,
)
from transforms.enrich.tags.tagging import TagPapers
from transforms.enrich.tags.taxonomy import (
    DEFAULT_TAXONOMY,
    MIN_TAG_EXAMPLES,
    TagExample,
    TaxonomyError,
    load_tag_examples,
    load_taxonomy,
    parse_tag_examples,
    parse_taxonomy,
)

SEEDS = Path(__file__).resolve().parents[3] / "shared" / "seeds"
LABELS = Path(__file__).resolve().parents[1] / "data" / "seed_topic_labels.jsonl"
TOPICS = {
    "diffusion-models",
    "generative-models",
    "language-models",
    "representation-learning",
    "computer-vision",
    "multimodal",
    "reinforcement-learning",
    "interpretability",
    "safety-and-fairness",
    "efficiency",
    "theory",
    "video-and-3d",
    "audio-and-speech",
    "graphs",
}


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy()


@pytest.fixture(scope="module")
def raw_taxonomy() -> dict:
    return tomllib.loads(DEFAULT_TAXONOMY.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- taxonomy file


def test_default_taxonomy_has_the_fourteen_topics(taxonomy):
    assert set(taxonomy.names) == TOPICS
    assert all(len(topic.examples) >= 3 for topic in taxonomy.topics)
    assert taxonomy.thresholds().shape == (len(TOPICS),)
    assert len(prototype_pairs(taxonomy)) == sum(1 + len(t.examples) for t in taxonomy.topics)


def _broken(raw: dict, edit) -> dict:
    data = copy.deepcopy(raw)
    edit(data)
    return data


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("assignment"), "missing [assignment]"),
        (lambda d: d["assignment"].update(threshold=1.5), "threshold must be a cosine"),
        (lambda d: d["assignment"].update(max_topics=0), "max_topics"),
        (lambda d: d["assignment"].update(extra=1), "unknown keys"),
        (lambda d: d.update(topics={}), "at least one topic"),
        (lambda d: d["topics"]["graphs"].update(examples=["a", "b"]), "at least 3"),
        (lambda d: d["topics"]["graphs"].update(description=""), "description"),
        (lambda d: d["topics"]["graphs"].update(threshold="high"), "threshold"),
        (lambda d: d["topics"]["graphs"].update(colour="red"), "unknown keys"),
        (lambda d: d["topics"].update({"Bad Name": d["topics"]["graphs"]}), "lowercase"),
        (lambda d: d["topics"].update({"survey": d["topics"]["graphs"]}), "clash"),
        (lambda d: d["paper_types"]["survey"].update(title_patterns=["(unclosed"]), "bad regular"),
        (lambda d: d["paper_types"].pop("has-code"), "has-code"),
        (lambda d: d["scoring"].update(top_k=-1), "top_k"),
        (lambda d: d.update(schema_version=2), "schema_version"),
        (lambda d: d.update(topic={}), "unknown top-level"),
    ],
)
def test_taxonomy_validation_names_the_problem(raw_taxonomy, edit, message):
    with pytest.raises(TaxonomyError, match="my.toml") as error:
        parse_taxonomy(_broken(raw_taxonomy, edit), source="my.toml")
    assert message in str(error.value)


def test_load_taxonomy_reports_missing_and_invalid_files(tmp_path):
    with pytest.raises(TaxonomyError, match="not found"):
        load_taxonomy(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("schema_version = [", encoding="utf-8")
    with pytest.raises(TaxonomyError, match="bad.toml: not valid TOML"):
        load_taxonomy(bad)


def test_topic_threshold_overrides_the_default(raw_taxonomy):
    data = _broken(raw_taxonomy, lambda d: d["topics"]["graphs"].update(threshold=0.5))
    taxonomy = parse_taxonomy(data)
    thresholds = dict(zip(taxonomy.names, taxonomy.thresholds(), strict=True))
    assert thresholds["graphs"] == pytest.approx(0.5)
    assert thresholds["theory"] == pytest.approx(taxonomy.assignment.threshold)


# --------------------------------------------------------------------------- scores & topics

NAMES = ("a", "b", "c", "d")


def test_assign_topics_keeps_best_then_threshold_and_margin():
    scores = np.array([0.30, 0.50, 0.45, 0.10])
    assert assign_topics(scores, NAMES, 0.2, 0.1, 3) == ["b", "c"]
    assert assign_topics(scores, NAMES, 0.2, 0.25, 3) == ["b", "c", "a"]
    assert assign_topics(scores, NAMES, 0.2, 0.25, 2) == ["b", "c"]
    # The best topic is kept even below every threshold.
    assert assign_topics(scores, NAMES, 0.9, 1.0, 3) == ["b"]
    # Per-topic thresholds.
    assert assign_topics(scores, NAMES, np.array([0.2, 0.2, 0.6, 0.2]), 0.25, 3) == ["b", "a"]


def _toy_prototypes(center: bool = False):
    eye = np.eye(4, dtype=np.float32)
    embedded = [("a", eye[0]), ("a", eye[1]), ("b", eye[2]), ("b", eye[2]), ("c", eye[3])]
    return build_prototypes(embedded, ("a", "b", "c"), center=center)


def test_tag_scores_top_k_and_mean_prototype():
    prototypes = _toy_prototypes()
    paper = np.array([1, 0, 0, 0], np.float32)
    assert tag_scores(paper, prototypes, top_k=1) == pytest.approx([1.0, 0.0, 0.0])
    assert tag_scores(paper, prototypes, top_k=2) == pytest.approx([0.5, 0.0, 0.0])
    assert tag_scores(paper, prototypes, top_k=0) == pytest.approx([np.sqrt(0.5), 0.0, 0.0])
    batch = tag_scores(np.stack([paper, paper]), prototypes, top_k=1)
    assert batch.shape == (2, 3)


def test_build_prototypes_centres_and_fails_on_missing_topics():
    prototypes = _toy_prototypes(center=True)
    assert np.allclose(np.linalg.norm(prototypes.texts, axis=1), 1.0)
    assert np.allclose(np.linalg.norm(prototypes.matrix, axis=1), 1.0)
    assert prototypes.center == pytest.approx([0.2, 0.2, 0.4, 0.2])
    with pytest.raises(ValueError, match=r"\['c'\]"):
        build_prototypes([("a", np.ones(4)), ("b", np.ones(4))], ("a", "b", "c"))
    with pytest.raises(ValueError, match="unknown topic 'z'"):
        build_prototypes([("z", np.ones(4))], ("a",))


# --------------------------------------------------------------------------- paper types


@pytest.mark.parametrize(
    ("title", "abstract", "urls", "expected"),
    [
        ("Diffusion Models: A Comprehensive Survey", "We cover samplers.", (), ["survey"]),
        ("Representation Learning: A Review and New Perspectives", "x", (), ["survey"]),
        ("Some Title", "In this survey, we organise the field.", (), ["survey"]),
        ("The Platonic Hypothesis", "First, we survey many examples of convergence.", (), []),
        ("MMTEB: Massive Multilingual Text Embedding Benchmark", "x", (), ["benchmark"]),
        ("UnsafeBench: Safety Classifiers", "x", (), ["benchmark"]),
        ("A Holistic Descriptor Dataset", "x", (), ["benchmark"]),
        (
            "Some Title",
            "We introduce the MNIST-C dataset, a suite of corruptions.",
            (),
            ["benchmark"],
        ),
        ("Some Title", "We present results on three benchmark datasets (CIFAR10).", (), []),
        (
            "Progressive Growing of GANs",
            "x" * 400 + " As an additional contribution, we construct a new CelebA dataset.",
            (),
            [],
        ),
        ("T", "Code at https://github.com/x/y.", ("https://github.com/x/y",), ["has-code"]),
        ("T", "Project page.", ("https://x.github.io/",), ["has-code"]),
        ("T", "See arXiv.", ("https://arxiv.org/abs/2101.00001",), []),
        (
            "A Survey of Benchmarks",
            "x",
            ("https://github.com/x",),
            ["survey", "benchmark", "has-code"],
        ),
    ],
)
def test_paper_type_rules(taxonomy, title, abstract, urls, expected):
    assert paper_type_tags(title, abstract, urls, taxonomy.rules) == expected


# --------------------------------------------------------------------------- evaluation


def test_evaluate_tags_micro_scores():
    result = evaluate_tags([["a", "b"], ["c"], ["a"]], [["a"], ["c", "d"], ["b"]])
    # tp = a, c; fp = b (paper 1), a (paper 3); fn = d, b.
    assert result["precision"] == pytest.approx(2 / 4)
    assert result["recall"] == pytest.approx(2 / 4)
    assert result["f1"] == pytest.approx(0.5)
    assert result["support"] == {"a": 1, "b": 1, "c": 1, "d": 1}
    with pytest.raises(ValueError):
        evaluate_tags([["a"]], [])


def test_calibrate_and_cross_validate_recover_a_clean_rule():
    rng = np.random.default_rng(0)
    gold, rows = [], []
    for i in range(60):
        first, second = i % 4, (i + 1) % 4
        row = rng.uniform(0.0, 0.2, size=4)
        row[first] = 0.6
        if i % 2:
            row[second] = 0.5
            gold.append({NAMES[first], NAMES[second]})
        else:
            gold.append({NAMES[first]})
        rows.append(row)
    scores = np.array(rows)
    assignment, f1 = calibrate(scores, gold, NAMES)
    assert f1 == pytest.approx(1.0)
    assert evaluate_tags(predict_topics(scores, NAMES, assignment), gold)["f1"] == 1.0
    cv = cross_validate(scores, gold, NAMES, folds=3)
    assert cv["f1"] == pytest.approx(1.0)
    assert len(cv["assignments"]) == 3


# --------------------------------------------------------------------------- labelled seed set


def test_labelled_seed_set_is_valid_and_covers_every_topic(taxonomy):
    rows = [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines()]
    assert all(set(row) == {"title", "topics", "paper_type"} for row in rows), "titles only"
    labels = load_labels(LABELS, taxonomy)
    assert len({title_key(label.title) for label in labels}) == len(labels) >= 70
    covered = {topic for label in labels for topic in label.topics}
    assert covered == TOPICS
    assert {"survey", "benchmark"} <= {t for label in labels for t in label.paper_type}


# --------------------------------------------------------------------------- real model

# A handful of labelled seed papers, one or two per area, tagged with the shipped settings.
SEED_SAMPLE = (
    "Denoising Diffusion Probabilistic Models",
    "Wasserstein GAN",
    "Masked Autoencoders Are Scalable Vision Learners",
    "Function Vectors in Large Language Models",
    "Learning to Play Atari in a World of Tokens",
    "Scaling and evaluating sparse autoencoders",
    "Erasing Concepts from Diffusion Models",
    "A Survey of Quantization Methods for Efficient Neural Network Inference",
    "Align your Latents: High-Resolution Video Synthesis with Latent Diffusion Models",
    "Codec-ASR: Training Performant Automatic Speech Recognition Systems with Discrete Speech Representations",
    "Variational Graph Auto-Encoders",
    "It's Not a Modality Gap: Characterizing and Addressing the Contrastive Gap",
)


@pytest.fixture(scope="module")
def embedder():
    """(handler, model): the pipeline's own handler, loaded once for this module."""
    from transforms.enrich.embed import SentenceTransformerHandler

    handler = SentenceTransformerHandler()
    return handler, handler.load_model()


@pytest.fixture(scope="module")
def prototypes(taxonomy, embedder):
    handler, model = embedder
    pairs = prototype_pairs(taxonomy)
    vectors = handler.run_inference([text for _, text in pairs], model)
    embedded = zip([name for name, _ in pairs], vectors, strict=True)
    return build_prototypes(embedded, taxonomy.names, taxonomy.scoring.center)


def test_tags_labelled_seed_papers(taxonomy, embedder, prototypes):
    if not SEEDS.is_dir():
        pytest.skip(f"seed dumps not available at {SEEDS}")
    from transforms.enrich.embed import embedding_text

    papers = read_seed_papers(SEEDS)
    labels = {title_key(label.title): label for label in load_labels(LABELS, taxonomy)}
    sample = [title_key(title) for title in SEED_SAMPLE]
    missing = [key for key in sample if key not in papers or key not in labels]
    assert not missing, f"sample titles not in the seeds/labels: {missing}"
    handler, model = embedder
    texts = [embedding_text(*papers[key][:2]) for key in sample]
    embeddings = list(handler.run_inference(texts, model))
    predicted, gold, top_hits = [], [], 0
    for key, embedding in zip(sample, embeddings, strict=True):
        title, abstract, urls = papers[key]
        tags, scores = tag_paper(embedding, title, abstract, urls, taxonomy, prototypes)
        assert [name for name, _ in scores] == list(taxonomy.names)
        topics = [tag for tag in tags if tag in TOPICS]
        assert 1 <= len(topics) <= taxonomy.assignment.max_topics
        top_hits += topics[0] in labels[key].topics
        predicted.append(topics)
        gold.append(labels[key].topics)
        if labels[key].paper_type:
            assert set(labels[key].paper_type) <= set(tags)
    assert top_hits >= len(sample) - 2
    assert evaluate_tags(predicted, gold)["f1"] >= 0.7


def test_tag_papers_pipeline(taxonomy, embedder):
    handler, model = embedder
    papers = {
        "asr": (
            "Streaming Speech Recognition with Neural Transducers",
            "We train an automatic speech recognition model on thousands of hours of audio "
            "and reduce the word error rate of streaming transducers. Code: "
            "https://github.com/example/asr",
            ("https://github.com/example/asr",),
        ),
        "gnn": (
            "Message Passing on Large Graphs",
            "Graph neural networks aggregate messages from neighbouring nodes. We study node "
            "classification and link prediction on citation graphs.",
            (),
        ),
    }
    from transforms.enrich.embed import embedding_text

    keys = list(papers)
    vectors = handler.run_inference([embedding_text(*papers[k][:2]) for k in keys], model)
    rows = [(k, v, *papers[k]) for k, v in zip(keys, vectors, strict=True)]

    def check(outputs):
        by_key = {key: (tags, scores) for key, tags, scores in outputs}
        assert set(by_key) == set(keys)
        assert by_key["asr"][0][0] == "audio-and-speech"
        assert "has-code" in by_key["asr"][0]
        assert by_key["gnn"][0][0] == "graphs"
        assert "has-code" not in by_key["gnn"][0]
        for _, scores in by_key.values():
            assert [name for name, _ in scores] == list(taxonomy.names)
            assert all(isinstance(score, float) for _, score in scores)

    options = PipelineOptions(["--runner=FnApiRunner"])
    with test_pipeline.TestPipeline(options=options) as pipeline:
        tagged = pipeline | beam.Create(rows) | TagPapers(taxonomy)
        assert_that(tagged, check)


# --------------------------------------------------------------------------- tag examples


def _example_lines(count: int) -> list[str]:
    rows = [{"title": "Paper 0", "abstract": "About graphs.", "tags": ["graphs"]}]
    rows += [
        {"text": f"Speech {i}", "topics": ["audio-and-speech", "survey"]} for i in range(count)
    ]
    return [json.dumps(row) for row in rows[:count]] + [""]


def test_parse_tag_examples_accepts_title_abstract_or_text(taxonomy):
    examples = parse_tag_examples(_example_lines(MIN_TAG_EXAMPLES), taxonomy.names)
    assert len(examples) == MIN_TAG_EXAMPLES
    assert examples[0].title == "Paper 0" and examples[0].topics == {"graphs"}
    assert examples[1].title == "" and examples[1].abstract == "Speech 0"
    assert examples[1].topics == {"audio-and-speech"}, "paper types are left to the rules"


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["{not json"], "x.jsonl:1: not JSON"),
        (['{"text": "a", "tags": ["nope"]}'], "x.jsonl:1: unknown tags ['nope']"),
        (['{"text": "a", "tags": ["survey"]}'], "no topic"),
        (['{"text": "a", "tags": "graphs"}'], "list of topic names"),
        (['{"title": "only a title", "tags": ["graphs"]}'], "'text'"),
        (['{"text": "a", "tags": ["graphs"]}'], f"at least {MIN_TAG_EXAMPLES}"),
    ],
)
def test_parse_tag_examples_names_the_problem(taxonomy, lines, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_tag_examples(lines, taxonomy.names, source="x.jsonl")


def test_load_tag_examples_attaches_them_to_the_taxonomy(tmp_path, taxonomy):
    path = tmp_path / "examples.jsonl"
    path.write_text("\n".join(_example_lines(12)), encoding="utf-8")
    with_examples = load_tag_examples(str(path), taxonomy)
    assert len(with_examples.examples) == 12 and with_examples.topics == taxonomy.topics


def _separable(n: int = 60, seed: int = 0):
    """Vectors whose topic is a direction: label k when component k is large."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.1, size=(n, 4)).astype(np.float32)
    gold = []
    for i in range(n):
        x[i, i % 4] += 1.0
        gold.append({NAMES[i % 4]})
    return x, gold


def test_ridge_head_learns_labels_out_of_fold():
    x, gold = _separable()
    y = label_matrix(gold, NAMES)
    assert y.sum() == len(gold) and y[1, 1] == 1.0
    predictions = out_of_fold_predictions(x, y)
    assert (predictions.argmax(axis=1) == y.argmax(axis=1)).all()


def test_fit_tag_head_beats_uninformative_zero_shot_scores():
    x, gold = _separable()
    zero = np.zeros((len(x), 4), dtype=np.float32)  # zero-shot knows nothing here
    head = fit_tag_head(x, gold, zero, NAMES)
    assert head.active.all()
    predicted = predict_topics(head.scores(x, zero), NAMES, head.assignment)
    assert evaluate_tags(predicted, gold)["f1"] == pytest.approx(1.0)
    cv = cross_validate_few_shot(x, zero, gold, NAMES, folds=3)
    assert cv["f1"] == pytest.approx(1.0)


def test_topics_without_enough_examples_keep_their_zero_shot_score():
    x, gold = _separable()
    keep = [i for i, g in enumerate(gold) if g != {"d"}]  # no example of topic d
    zero = np.random.default_rng(1).uniform(0, 0.3, size=(len(x), 4)).astype(np.float32)
    head = fit_tag_head(x[keep], [gold[i] for i in keep], zero[keep], NAMES)
    assert head.active.tolist() == [True, True, True, False]
    assert head.scores(x, zero)[:, 3] == pytest.approx(zero[:, 3])


def test_build_tag_model_trains_a_head_only_with_examples(taxonomy):
    x, gold = _separable(40)
    names = taxonomy.names[:4]
    topics = tuple(t for t in taxonomy.topics if t.name in names)
    small = dataclasses.replace(taxonomy, topics=topics)
    rng = np.random.default_rng(2)
    texts = [(t.name, rng.normal(size=4)) for t in topics for _ in range(3)]
    assert build_tag_model(texts, small).head is None
    renamed = [frozenset({names[NAMES.index(next(iter(g)))]}) for g in gold]
    examples = tuple(TagExample("", f"text {i}", g) for i, g in enumerate(renamed))
    embedded = texts + [((EXAMPLE_KEY, i), v) for i, v in reversed(list(enumerate(x)))]
    model = build_tag_model(embedded, dataclasses.replace(small, examples=examples))
    assert model.head is not None and model.head.weights.shape == (5, 4)
    with pytest.raises(ValueError, match="39 of 40"):
        build_tag_model(
            texts + embedded[len(texts) + 1 :], dataclasses.replace(small, examples=examples)
        )


def test_tag_papers_pipeline_with_examples(taxonomy):
    """The examples are embedded in the prototype branch and train the head there."""
    lines = [
        json.dumps({"title": t, "abstract": a, "tags": [topic]})
        for topic, pairs in _HANDMADE_EXAMPLES.items()
        for t, a in pairs
    ]
    with_examples = dataclasses.replace(
        taxonomy, examples=parse_tag_examples(lines, taxonomy.names)
    )
    from transforms.enrich.embed import SentenceTransformerHandler, embedding_text

    handler = SentenceTransformerHandler()
    vector = next(
        iter(
            handler.run_inference(
                [
                    embedding_text(
                        "Streaming speech recognition", "We transcribe audio with transducers."
                    )
                ],
                handler.load_model(),
            )
        )
    )
    rows = [("asr", vector, "Streaming speech recognition", "We transcribe audio.", ())]

    def check(outputs):
        ((key, tags, scores),) = outputs
        assert key == "asr" and tags[0] == "audio-and-speech"
        assert [name for name, _ in scores] == list(taxonomy.names)

    options = PipelineOptions(["--runner=FnApiRunner"])
    with test_pipeline.TestPipeline(options=options) as pipeline:
        tagged = pipeline | beam.Create(rows) | TagPapers(with_examples)
        assert_that(tagged, check)


_HANDMADE_EXAMPLES = {
    "audio-and-speech": [
        ("Neural Speech Synthesis", "A text-to-speech model that generates natural voices."),
        ("Robust ASR", "Automatic speech recognition under noisy audio conditions."),
        ("Audio Codecs", "Neural audio compression with residual vector quantization."),
        ("Speaker Verification", "Embedding voices to verify who is speaking."),
        ("Music Generation", "Generating music audio from text descriptions."),
        ("Whisper Fine-tuning", "Adapting a speech recognizer to low-resource languages."),
    ],
    "graphs": [
        ("Graph Attention", "Attention over the neighbours of each node in a graph."),
        ("Link Prediction", "Predicting missing edges in knowledge graphs."),
        ("Molecule GNNs", "Message passing neural networks for molecular property prediction."),
        ("Graph Transformers", "Positional encodings for transformers on graphs."),
        ("Node Classification", "Semi-supervised node classification on citation networks."),
        ("Graph Pooling", "Hierarchical pooling of graph neural network representations."),
    ],
}


def test_tag_examples_option(tmp_path):
    from beam_jobs.errors import UserError
    from beam_jobs.options import DigestflowOptions
    from beam_jobs.options import taxonomy as taxonomy_option

    def parse(*flags):
        return PipelineOptions(list(flags)).view_as(DigestflowOptions)

    assert taxonomy_option(parse()).examples == ()
    with pytest.raises(UserError, match="--tag_examples"):
        taxonomy_option(parse(f"--tag_examples={tmp_path / 'missing.jsonl'}"))
    path = tmp_path / "examples.jsonl"
    path.write_text("\n".join(_example_lines(10)), encoding="utf-8")
    assert len(taxonomy_option(parse(f"--tag_examples={path}")).examples) == 10


# --------------------------------------------------------------------------- prototype cache


def _tag_with_cache(rows, taxonomy, cache_dir) -> tuple[list, int]:
    """(tags of every row, texts the pipeline embedded) for one TagPapers run."""
    pipeline = test_pipeline.TestPipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    tagged = pipeline | beam.Create(rows) | TagPapers(taxonomy, cache_dir=str(cache_dir))
    dump = cache_dir / "tagged.json"
    _ = tagged | beam.combiners.ToList() | beam.Map(lambda t: dump.write_text(json.dumps(t)))
    result = pipeline.run()
    result.wait_until_finish()
    query = MetricsFilter().with_name("embedded_texts")
    embedded = sum(c.committed for c in result.metrics().query(query)["counters"])
    return sorted(json.loads(dump.read_text())), embedded


def test_prototype_vectors_are_cached_between_runs(taxonomy, embedder, tmp_path):
    handler, model = embedder
    texts = ["Speech recognition with transducers.", "Message passing on citation graphs."]
    vectors = handler.run_inference(texts, model)
    rows = [(f"p{i}", v, t, t, ()) for i, (t, v) in enumerate(zip(texts, vectors, strict=True))]
    first, embedded_first = _tag_with_cache(rows, taxonomy, tmp_path)
    assert embedded_first == len(prototype_pairs(taxonomy))
    assert len(list(tmp_path.glob("prototypes-*.npy"))) == 1
    second, embedded_second = _tag_with_cache(rows, taxonomy, tmp_path)
    assert embedded_second == 0, "a cache hit embeds nothing"
    assert second == first


def test_prototype_cache_key_and_damage(tmp_path):
    config = EmbedConfig()
    path = cache_file(str(tmp_path), config, ["a", "b"])
    assert path != cache_file(str(tmp_path), config, ["a", "c"])
    assert path != cache_file(str(tmp_path), EmbedConfig(max_seq_length=128), ["a", "b"])
    assert path != cache_file(str(tmp_path), EmbedConfig(backend="onnx"), ["a", "b"])
    assert load_vectors(path, 2) is None  # absent
    store_vectors(path, np.ones((2, 4), np.float32))
    assert load_vectors(path, 2).shape == (2, 4)
    assert load_vectors(path, 3) is None  # other texts
    path.write_bytes(b"not numpy")
    assert load_vectors(path, 2) is None  # damaged: a miss, re-embedded


# --------------------------------------------------------------------------- packaged head


def test_packaged_head_applies_to_the_default_setup_only(taxonomy):
    from transforms.enrich.tags.head import packaged_head_applies

    assert packaged_head_applies(taxonomy, EmbedConfig())
    assert packaged_head_applies(taxonomy, EmbedConfig(backend="torch"))  # same vectors
    assert not packaged_head_applies(taxonomy, EmbedConfig(max_seq_length=128))
    assert not packaged_head_applies(taxonomy, EmbedConfig(text_template="{abstract}"))
    other = dataclasses.replace(taxonomy, topics=taxonomy.topics[:-1])
    assert not packaged_head_applies(other, EmbedConfig())


def test_tag_head_option_and_a_changed_head_file_is_refused(taxonomy, tmp_path):
    from beam_jobs.options import DigestflowOptions
    from beam_jobs.options import taxonomy as taxonomy_option
    from transforms.enrich.tags.head import PACKAGED_HEAD, file_sha256, load_head

    assert taxonomy_option(DigestflowOptions([])).packaged_head == file_sha256(PACKAGED_HEAD)
    assert taxonomy_option(DigestflowOptions(["--tag_head", "none"])).packaged_head is None
    assert taxonomy_option(DigestflowOptions(["--no_embeddings"])) is None
    head = load_head(PACKAGED_HEAD, file_sha256(PACKAGED_HEAD))
    assert head.weights.shape == (384 + 1, len(taxonomy.names))  # weights and a bias
    with pytest.raises(ValueError, match="changed"):
        load_head(PACKAGED_HEAD, "0" * 64)


def test_the_packaged_head_is_a_setting_of_its_own(taxonomy):
    """An update names the head when it differs; an output tagged before the head existed
    (no "head" leaf) matches --tag_head none and keeps its taxonomy fingerprint."""
    from beam_jobs.incremental.settings import (
        run_settings,
        settings_differences,
        taxonomy_fingerprint,
    )
    from transforms.dedup.duplicates import DedupConfig
    from transforms.enrich.tags.head import PACKAGED_HEAD, file_sha256

    headed = dataclasses.replace(taxonomy, packaged_head=file_sha256(PACKAGED_HEAD))
    assert taxonomy_fingerprint(headed) == taxonomy_fingerprint(taxonomy)
    plain = run_settings(DedupConfig(), EmbedConfig(), topics=taxonomy)
    assert "head" not in plain["tags"]
    differences = settings_differences(
        plain, run_settings(DedupConfig(), EmbedConfig(), topics=headed)
    )
    assert len(differences) == 1 and differences[0].startswith("tags.head: None -> 'packaged ")
    assert "--tag_head" in differences[0]


def test_packaged_head_is_what_train_head_writes_from_the_labels(tmp_path):
    """The shipped weights are reproducible from the labels and the model (not stale)."""
    if not SEEDS.is_dir():
        pytest.skip(f"seed dumps not available at {SEEDS}")
    from bench import train_head
    from transforms.enrich.tags.head import PACKAGED_HEAD, load_head

    out = tmp_path / "head.npz"
    assert train_head.main(["--seeds", str(SEEDS), "--out", str(out)]) == 0
    shipped, fresh = load_head(PACKAGED_HEAD), load_head(out)
    np.testing.assert_allclose(fresh.weights, shipped.weights, atol=1e-4)
    assert fresh.assignment == shipped.assignment
    assert (fresh.active == shipped.active).all()
