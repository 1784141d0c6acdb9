"""``codistill teacher cache`` defaults, apart from :mod:`cache_format` so that building the
command line (every start of ``codistill``) does not import numpy and lz4."""

# At most 64 tokens per position, fewer where they already hold 99.9% of the probability (the
# adaptive cut of cache format v3).
KMAX_DEFAULT = 64
KEPT_MASS_DEFAULT = 0.999
