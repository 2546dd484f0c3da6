"""Execution and evaluation: numpy golden, host/QEMU runners, cost model."""
