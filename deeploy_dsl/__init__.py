"""deeploy: compile TinyStories-class Llama models to integer-only, static-memory C for RISC-V MCUs."""

__version__ = "0.1.0"
