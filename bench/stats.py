"""What the benchmark scripts compute from their rounds, in one place."""


def lower_median(values):
    """The median of `values`; the lower middle for an even count, so that it is always one
    round's own figure (a round's figures stay together)."""
    values = sorted(values)
    return values[(len(values) - 1) // 2]
