"""Write the packaged int8 calibration set (developer tooling): ``python -m bench.calibration``.

``--embedding_backend openvino-int8`` quantizes the model's activations with ranges measured
on these texts (:func:`transforms.enrich.encoders.quantize_openvino`). They are papers of the
synthetic generator, never real abstracts, rendered with the embedding text template, so
they look like what the pipeline embeds (title + abstract, ~1.1k characters). Measured on
the seed papers, 128 of them calibrate as well as 256 or 300 and better than the taxonomy's
short prototype texts (docs/benchmarks.md). Re-run it when the generator or the template
changes; a test checks the packaged file is what this writes.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
from pathlib import Path

from beam_jobs.synthetic.papers import distinct_papers
from transforms.enrich.embed import TEXT_TEMPLATE, embedding_text
from transforms.enrich.encoders import CALIBRATION_FILE

TEXTS = 128
SEED = 20261204


def calibration_document(texts: int = TEXTS, seed: int = SEED) -> dict:
    papers = itertools.islice(distinct_papers(seed), texts)
    return {
        "source": f"beam_jobs.synthetic.papers.distinct_papers(seed={seed})",
        "template": TEXT_TEMPLATE,
        "texts": [embedding_text(p.title, p.abstract, TEXT_TEMPLATE) for p in papers],
    }


def write(path: Path, document: dict) -> None:
    data = json.dumps(document, indent=0, ensure_ascii=False).encode("utf-8")
    with path.open("wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as fh:
        fh.write(
            data
        )  # no name, mtime=0: the same texts, the same bytes (the cache key hashes them)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(CALIBRATION_FILE))
    args = parser.parse_args(argv)
    document = calibration_document()
    write(Path(args.out), document)
    print(f"{len(document['texts'])} calibration texts -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
