"""The demo story model: its corpus grammar, its BPE tokenizer and its training (torch, optional)."""
