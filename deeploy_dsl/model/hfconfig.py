"""The Hugging Face config.json beside the weights: what deeploy reads from it and what it refuses.

Only a Llama computes what deeploy's kernels compute: SiLU gates, plain RoPE, no biases, llama2.c's BOS 1
and EOS 2. A Mistral config is a Llama with a sliding attention window, so one is accepted when the window
covers the whole context (then every position attends to all earlier ones, exactly as in a Llama);
every other architecture, and every setting that changes the arithmetic, is an error naming the field.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from .modelfiles import FileProblem, load_json, read_regular, short

CONFIG_MAX_BYTES = 1 << 20  # a Llama config.json is about 1 KB
INT_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "intermediate_size", "vocab_size", "max_position_embeddings")
FLOAT_FIELDS = ("rms_norm_eps", "rope_theta")
BOOL_FIELDS = ("tie_word_embeddings",)
MODEL_TYPES = ("llama", "mistral")
ACTIVATIONS = ("silu", "swish")  # transformers' ACT2FN maps both to SiLU
BOS, EOS = 1, 2  # the llama2.c tokenizer's (tokenizer.py)


@dataclass(frozen=True)
class HFConfig:
    values: dict  # the fields above that the file states, typed as checked
    errors: tuple[str, ...]  # what is wrong with the file, one message each
    sliding_window: int | None = None  # a Mistral's attention window (None: unlimited)


def read_config(path: Path) -> HFConfig | None:
    """The config at `path` (None if there is none: no file and no dangling link)."""
    if not os.path.lexists(path):
        return None
    try:
        config = load_json(read_regular(path, CONFIG_MAX_BYTES, "config.json"))
    except FileProblem as e:
        return HFConfig({}, (f"cannot read {path.name} beside the weights: it {e}",))
    if not isinstance(config, dict):
        return HFConfig({}, (f"{path.name} beside the weights is not a JSON object",))
    return _checked(config, path.name)


def _checked(config: dict, name: str) -> HFConfig:
    errs: list[str] = []
    rope = config.get("rope_parameters")
    if config.get("rope_theta") is None and isinstance(rope, dict):
        config["rope_theta"] = rope.get("rope_theta")  # newer transformers
    if config.get("num_key_value_heads") is None:
        config["num_key_value_heads"] = config.get("num_attention_heads")  # LlamaConfig: no GQA
    if "tie_word_embeddings" not in config:
        config["tie_word_embeddings"] = False  # LlamaConfig's default
    values = {}
    for hf in INT_FIELDS + FLOAT_FIELDS + BOOL_FIELDS:
        v = config.get(hf)
        if v is None:
            continue
        if hf in BOOL_FIELDS:
            ok, want = isinstance(v, bool), "true or false"
        elif hf in FLOAT_FIELDS:
            ok, want = _number(v) and math.isfinite(v), "a number"
        else:
            ok, want = isinstance(v, int) and not isinstance(v, bool), "a whole number"
        if ok:
            values[hf] = v
        else:
            errs.append(f"{name} beside the weights has {hf} = {_show(v)}, expected {want}")
    errs += _architecture(config, values, name)
    window = config.get("sliding_window") if config.get("model_type") == "mistral" else None
    if window is not None and not (isinstance(window, int) and not isinstance(window, bool) and window > 0):
        errs.append(f"{name}: sliding_window = {_show(window)}, expected a positive whole number or null")
        window = None
    return HFConfig(values, tuple(errs), window)


def _architecture(config: dict, values: dict, name: str) -> list[str]:
    """What in the config would make the model compute something other than a Llama."""
    errs = []
    mt = config.get("model_type")
    if mt is not None and mt not in MODEL_TYPES:
        errs.append(f"{name}: model_type {_show(mt)} is not supported (supported: llama, and mistral "
                    "when its sliding_window covers the context)")
    act = config.get("hidden_act")
    if act is not None and act not in ACTIVATIONS:
        errs.append(f"{name}: hidden_act {_show(act)} is not supported; deeploy's MLP is SwiGLU (silu)")
    head_dim = config.get("head_dim")
    dim, heads = values.get("hidden_size"), values.get("num_attention_heads")
    if head_dim is not None and isinstance(dim, int) and isinstance(heads, int) and heads > 0 \
            and head_dim != dim // heads:
        errs.append(f"{name}: head_dim {_show(head_dim)} is not hidden_size / num_attention_heads; "
                    "such models are not supported")
    if config.get("rope_scaling"):
        errs.append(f"{name}: rope_scaling is not supported")
    rope = config.get("rope_parameters")
    if isinstance(rope, dict) and rope.get("rope_type", "default") != "default":
        errs.append(f"{name}: rope_parameters rope_type {_show(rope.get('rope_type'))} is not supported "
                    "(only the default RoPE)")
    for bias in ("attention_bias", "mlp_bias"):
        if config.get(bias):
            errs.append(f"{name}: {bias} = {_show(config[bias])} is not supported (deeploy's linear layers "
                        "have no bias)")
    bos, eos = config.get("bos_token_id"), config.get("eos_token_id")
    if bos is not None and bos != BOS:
        errs.append(f"{name}: bos_token_id = {_show(bos)}, but the llama2.c tokenizer's BOS is {BOS}")
    if eos is not None and eos != EOS and not (isinstance(eos, list) and EOS in eos):
        errs.append(f"{name}: eos_token_id = {_show(eos)}, but the llama2.c tokenizer's EOS is {EOS}")
    return errs


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _show(v) -> str:
    return short(json.dumps(v), 60)
