"""Safety: the independent monitor (numba kernel), alarm catalogue, release policy."""
