"""Train the packaged topic head (developer tooling): ``python -m bench.train_head``.

Embeds the labelled seed papers (``tests/data/seed_topic_labels.jsonl`` joined with the
seed dumps) with the packaged model, fits :func:`transforms.enrich.tags.head.fit_tag_head`
on all of them and writes ``transforms/enrich/tags/tag_head.npz`` (weights and three
assignment numbers; no text). Prints the k-fold estimate of the same recipe first: that, not
the in-sample fit, is the quality to expect on papers nobody labelled. Re-run it when the
model, the text template, the taxonomy or the labels change (the file records what it was
trained for; the pipeline ignores a head trained for something else).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import SEEDS
from bench.tags import DEFAULT_LABELS, labelled_seeds
from transforms.enrich.embed import EmbedConfig
from transforms.enrich.tags.evaluation import cross_validate_few_shot
from transforms.enrich.tags.head import PACKAGED_HEAD, fit_tag_head, save_head
from transforms.enrich.tags.taxonomy import load_taxonomy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default=str(SEEDS))
    parser.add_argument("--labels", default=str(DEFAULT_LABELS))
    parser.add_argument("--out", default=str(PACKAGED_HEAD))
    args = parser.parse_args(argv)
    taxonomy, config = load_taxonomy(), EmbedConfig()
    _, found, embeddings, scores = labelled_seeds(args.seeds, args.labels, taxonomy, config)
    gold = [label.topics for label, _ in found]
    kfold = cross_validate_few_shot(embeddings, scores, gold, taxonomy.names, 5)
    print(
        f"{len(found)} labelled papers; 5-fold estimate: precision {kfold['precision']:.3f} "
        f"recall {kfold['recall']:.3f} F1 {kfold['f1']:.3f}"
    )
    head = fit_tag_head(embeddings, gold, scores, taxonomy.names)
    save_head(Path(args.out), head, taxonomy, config)
    print(f"wrote {args.out} ({head.assignment})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
