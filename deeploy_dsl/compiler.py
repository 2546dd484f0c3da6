"""The pipeline: one list of named phases, each returning a new object; the plan's invariants are checked after
every phase that makes or changes a plan (verify.py).

    frontend   parse, interpret       .dply -> Deployment                       interpret.load_deployment
    model      weights, tokenizer     -> Weights, Tokenizer, FloatModel         weights.load_weights, load_tokenizer
    quant      smooth (if asked)      -> Weights, FloatModel (exact rewrites)   smooth.smooth
               calibrate, quantize    -> ranges, QuantModel                     quantize.calibrate, quantize.quantize
               (the three memoised by the weights' content and the quantize block: quant/cache.py)
    ir         graph                  -> Graph (one decode step's ops)          graph.build_graph
    passes     mapping                -> Mapping (an engine per op)             mapping.place_ops
               lowering               -> Plan (a kernel call per op)            rules.lower with rules_for(target)
               tiling                 -> Plan (tiles and DMA through L1)        tiling.tile
               forks                  -> Plan (fork groups)                     forks.group_forks
               weight stream          -> Plan (first tiles fetched early)       stream.weight_stream
               allocation             -> Allocation (arena offsets)             arena.allocate
               prefill                -> Prefill (the prompt's plan, the same)  prefill.build
    then, from the Compiled:
    engines    cost                   -> cycles, energy, report.json            cost.summary (report.py)
               golden                 -> logits (numpy twins of the kernels)    golden.Golden
    backend    codegen                -> model.c, plan.yaml, ... (templates)    codegen.render
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from . import progress
from .engines.cost import step_cost
from .errors import DeeployError, Diagnostic, Pos, SpecError
from .frontend.interpret import load_deployment
from .frontend.spec import Deployment
from .ir.graph import Graph, Plan, build_graph
from .model.float_model import FloatModel
from .model.tokenizer import Tokenizer, utf8
from .model.weights import Weights, load_weights
from .passes.arena import Allocation, allocate
from .passes.forks import group_forks
from .passes.stream import weight_stream
from .passes.mapping import place_ops, weight_groups
from .passes.prefill import Prefill, build as build_prefill
from .passes.rules import lower, rules_for
from .passes.tiling import adopt_kernels, tile
from .passes.verify import check_plan
from .quant.cache import CACHE as QUANT_CACHE, QuantStage, quant_key
from .quant.quantize import QuantModel, calibrate, input_hessians, quantize
from .quant.smooth import smooth


@dataclass(frozen=True)
class Compiled:
    dep: Deployment
    weights: Weights
    tokenizer: Tokenizer | None
    fm: FloatModel
    ranges: dict
    quant: QuantModel
    graph: Graph
    plan: Plan
    alloc: Allocation
    prefill: Prefill | None = None  # the prompt's plan: chunks of tokens, step-major (prefill.py)

    @property
    def warnings(self) -> tuple:
        return tuple(self.dep.warnings) + tuple(self.plan.warnings)


def load_tokenizer(dep: Deployment) -> Tokenizer | None:
    path = dep.model.tokenizer
    if path is None:
        return None
    try:
        tok = Tokenizer.load(path)
    except FileNotFoundError:
        raise SpecError([Diagnostic(dep.model.tokenizer_pos, f"tokenizer file {path} does not exist")]) from None
    except (ValueError, OSError) as e:
        raise SpecError([Diagnostic(dep.model.tokenizer_pos, f"cannot read tokenizer: {e}")]) from None
    if len(tok.vocab) != dep.model.dims.vocab:
        raise SpecError([Diagnostic(dep.model.tokenizer_pos,
                                    f"tokenizer has {len(tok.vocab)} tokens, the model's vocab is {dep.model.dims.vocab}")])
    return tok


def prompt_ids(tok: Tokenizer | None, prompt: str, context: int, pos: Pos) -> list[int]:
    """The prompt's ids, BOS first, or one error that reads the same wherever the prompt came from (the `.dply`,
    `deeploy run --prompt`) and whichever engine runs: not text, too many bytes to fit in the context (checked
    before tokenizing, so a huge prompt fails at once), not encodable, or too many tokens."""
    if tok is None:
        raise SpecError([Diagnostic(pos, "running with a text prompt needs a tokenizer in the model block")])
    try:
        data = utf8(prompt)
    except ValueError as e:  # says which character is not text
        raise SpecError([Diagnostic(pos, str(e))]) from None
    if len(data) > (most := tok.max_prompt_bytes(context)):
        raise SpecError([Diagnostic(pos, f"the prompt is {len(data):,} bytes; no more than {most:,} can fit the "
                                    f"context of {context} tokens")])
    try:
        ids = tok.encode(data)
    except ValueError as e:
        raise SpecError([Diagnostic(pos, f"the tokenizer cannot encode the prompt: {e}")]) from None
    if len(ids) > context:
        raise SpecError([Diagnostic(pos, f"the prompt is {len(ids):,} tokens (with BOS); the context holds {context}")])
    return ids


def check_prompt(dep: Deployment, tok: Tokenizer) -> list[int]:
    """The `.dply`'s prompt as the generated program takes it (its default prompt, whose prefill build reports)."""
    g = dep.generate
    return prompt_ids(tok, g.prompt, dep.model.dims.context, g.prompt_pos or g.pos)


def compile_deployment(path: Path, overrides: list[str] | None = None, strict: bool | None = None) -> Compiled:
    dep = load_deployment(path, overrides, strict)
    try:
        return _compile(dep)
    except DeeployError as e:  # warnings said before a later failure still reach the user
        raise type(e)(list(dep.warnings) + e.diagnostics, e.omitted) from None


def _quant_stage(dep: Deployment, fm: FloatModel, tok: Tokenizer | None, graph: Graph) -> QuantStage:
    """smooth (if asked), calibrate, quantize: what depends on the weights and the quantize block only (quant/cache.py
    memoises it)."""
    smoothed = None
    if dep.quant.smooth is not None:  # an exact rewrite of the float model
        smoothed = replace(smooth(fm, dep.quant.calibration, dep.quant.smooth, tok, dep.quant.smooth_down), pos=None)
        fm = FloatModel(replace(smoothed, pos=fm.w.pos), dep.model.dims)
    hessians = input_hessians(dep.model.dims) if dep.quant.rounding == "gptq" else None
    ranges = calibrate(fm, dep.quant.calibration, tok, hessians)
    # GPTQ rounds every linear layer but an int16 classifier (rounded to nearest)
    n_linear = sum(op.kind == "linear" for op in graph.ops) - (dep.quant.classifier == "int16")
    with progress.task("GPTQ rounding", n_linear, when=hessians is not None) as tick:
        quant = quantize(fm, ranges, keys=dep.quant.keys, groups=weight_groups(graph, dep), hessians=hessians,
                         dynamic=dep.quant.dynamic, queries=dep.quant.queries, gate_up=dep.quant.gate_up,
                         swiglu=dep.quant.swiglu, classifier=dep.quant.classifier, on_gptq_layer=tick)
    return QuantStage(smoothed, ranges, quant)


def _compile(dep: Deployment) -> Compiled:
    # model
    weights = load_weights(dep.model)
    tok = load_tokenizer(dep)
    if tok is not None:  # without one the program takes token ids, and the prompt is not used
        check_prompt(dep, tok)
    fm = FloatModel(weights, dep.model.dims)
    # quant and ir
    graph = build_graph(dep.model.dims, dep.quant.keys, dep.quant.dynamic, dep.quant.queries, dep.quant.gate_up,
                        dep.quant.swiglu)
    key = quant_key(dep, weights)
    stage = QUANT_CACHE.get(key) or QUANT_CACHE.put(key, _quant_stage(dep, fm, tok, graph))
    if stage.weights is not None:  # smoothed: the float model the rest compiles and is measured against
        weights = replace(stage.weights, pos=weights.pos)
        fm = FloatModel(weights, dep.model.dims)
    ranges, quant = stage.ranges, stage.quant
    # passes
    mapping = place_ops(graph, dep)
    lowered = check_plan(lower(graph, quant, dep, mapping, rules_for(dep.target)), "lowering")
    tiled = check_plan(tile(lowered, dep, lambda s, p: step_cost(s, p, dep).cycles), "tiling")
    plan = check_plan(weight_stream(group_forks(tiled, dep), dep), "fork grouping and the weight stream")
    alloc = allocate(plan, dep)
    check_plan(plan, "allocation", alloc)
    pre = build_prefill(adopt_kernels(lowered, tiled), alloc, dep, {s.op: s.staging.tiles for s in tiled.steps})
    check_plan(pre.plan, "the prefill plan", pre.alloc)
    return Compiled(dep, weights, tok, fm, ranges, quant, graph, plan, alloc, pre)
