"""The product's Beam metrics: one namespace per stage family, and the counting helpers.

Counter names are part of the output contract: ``run_summary.json`` lists every counter
(``name`` for this package's main namespace, ``namespace.name`` for the others) and the
launcher checks that records add up from them.
"""

from __future__ import annotations

from typing import Any

from apache_beam.metrics import Metrics

NAMESPACE = "digestflow"  # reading, parsing, clustering, writing, updates
LSH_NAMESPACE = "lsh"
COMPONENTS_NAMESPACE = "components"
SEMANTIC_NAMESPACE = "semantic"
EMBED_NAMESPACE = "digestflow_embed"  # the model handler's own (RunInference's namespace)


def counter(name: str, namespace: str = NAMESPACE) -> Any:
    return Metrics.counter(namespace, name)


def distribution(name: str, namespace: str = NAMESPACE) -> Any:
    return Metrics.distribution(namespace, name)


def counted(element: Any, counter: Any) -> Any:
    """``beam.Map(counted, counter("..."))``: count elements passing by."""
    counter.inc()
    return element
