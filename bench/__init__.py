"""``make bench``: developer benchmarks (not in the wheel). :mod:`bench.harness` runs the
sections, :mod:`bench.common` holds what they share, one module per section."""
