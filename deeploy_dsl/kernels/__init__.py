"""Kernel specs, the registry, numpy twins of the C kernels, weight layouts."""
