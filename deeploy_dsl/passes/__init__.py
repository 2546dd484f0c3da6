"""Compiler passes: mapping, lowering rules, tiling, forks, prefill, memory allocation, plan checks."""
