#!/usr/bin/env python3
"""What TensorRT's ONNX parser (onnx-tensorrt, TensorRT 10.x and 11.x) refuses, checked on an ONNX
file without TensorRT. A model that breaks one of these rules fails its engine build on the GPU,
and no CI machine has TensorRT: this is the part of that build that can be checked everywhere.

    .venv/bin/python scripts/tensorrt_onnx_rules.py MODEL.onnx [...]   problems per file; exit 1 if any
    .venv/bin/python scripts/tensorrt_onnx_rules.py --self-test        every rule on small graphs

scripts/export_onnx.py runs problems() on the files it writes and prints each as a warning; the
parity suite (test/parity) requires none for every generation's FP32 and FP16 export. Before that,
the export replaces each EyeLike of a statically sized input by the constant it makes
(constant_eyelike): the one rewrite made for TensorRT, whose EyeLike importer refuses an input it
cannot size while parsing (the AU head's identity matrix is sized through Shape, Gather and
ConstantOfShape from a [N, 20, C] tensor), where a constant always imports.

The rules are what onnx-tensorrt states for the operators the exporter writes: the support matrix
of its 10.x releases (docs/operators.md: the element types per operator, the "Restrictions"
column) and its importers' own checks (RoiAlign's [R, 4] boxes, Range's input types). Plus
TensorRT's type rules: no DOUBLE (only cast down, clamped), no INT8 / INT4 / FP8 outside
quantization, UINT8 only as a network input or output. Opsets 9 to 20 (TensorRT 10.0's range).

An operator not in OPERATORS has not been checked against that matrix: it is reported by name, so
that a new operator in an export is looked up there before a GPU finds it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

F = ("FLOAT", "FLOAT16", "BFLOAT16")
FI = F + ("INT32", "INT64")
FIB = FI + ("BOOL",)
# Operator -> the element types onnx-tensorrt 10.x imports it with (of its data input, or of its
# output for the operators that make a tensor from attributes or scalars).
OPERATORS: dict[str, tuple[str, ...]] = {
    "Add": FI, "Asin": F, "Atan": F, "Cast": FIB + ("UINT8",), "Clip": F, "Concat": FIB, "Constant": FIB, "ConstantOfShape": FIB,
    "Conv": F, "Cos": F, "Div": FI, "Equal": FI, "Erf": F, "Expand": FIB, "EyeLike": FIB, "Flatten": FIB, "Gather": FIB,
    "Gemm": F, "Greater": FI, "Identity": FIB, "InstanceNormalization": F, "LayerNormalization": F, "Less": FI, "MatMul": F, "Mul": FI, "Neg": FI,
    "Pow": F, "Range": ("FLOAT", "INT32", "INT64"), "Reciprocal": F, "ReduceL2": FI, "ReduceMax": FI, "ReduceMean": FI, "ReduceMin": FI, "ReduceSum": FI, "Relu": FI,
    "Reshape": FIB, "RoiAlign": ("FLOAT", "FLOAT16"), "ScatterElements": FI, "Shape": FIB, "Sigmoid": F,
    "Sin": F, "Slice": FIB, "Softmax": F, "Sqrt": F, "Squeeze": FIB, "Sub": FI, "Tanh": F, "TopK": FI, "Transpose": FIB,
    "Unsqueeze": FIB, "Where": FIB,
}
# The element type checked is the output's for these (their inputs are shapes or scalars).
TYPED_BY_OUTPUT = {"Constant", "ConstantOfShape", "EyeLike", "Range"}
# Inputs (by position) that must be constants (an initializer or a Constant's output).
CONSTANT_INPUTS = {
    "ReduceL2": {1: "axes"}, "ReduceMax": {1: "axes"}, "ReduceMean": {1: "axes"}, "ReduceMin": {1: "axes"}, "ReduceSum": {1: "axes"},
    "Slice": {3: "axes"},
    "Squeeze": {1: "axes"}, "Unsqueeze": {1: "axes"}, "TopK": {1: "K"},
}
TOPK_MAX_K = 3840           # "K input must be less than 3840"
OPSETS = range(9, 21)       # TensorRT 10.0 imports opsets 9 to 20
ELEMENT_TYPES = set(FIB) | {"UINT8"}


def _type_name(elem_type: int) -> str:
    from onnx import TensorProto
    return TensorProto.DataType.Name(elem_type)


def _tensors(model):
    """name -> (element type name, shape: a list of ints, None where unknown) for every tensor
    onnx's type inference can see (with data propagation: shape arithmetic on static dimensions,
    Shape -> Gather -> Concat, gives static sizes, as it does in TensorRT's parser), and the
    constant tensors (name -> value, None for external data)."""
    from onnx import numpy_helper, shape_inference
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    g = inferred.graph
    info: dict[str, tuple[str, list | None]] = {}
    for v in [*g.input, *g.value_info, *g.output]:
        t = v.type.tensor_type
        if t.elem_type == 0:
            continue
        shape = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim] if t.HasField("shape") else None
        info[v.name] = (_type_name(t.elem_type), shape)
    constants: dict[str, object] = {}
    for init in g.initializer:
        info[init.name] = (_type_name(init.data_type), list(init.dims))
        constants[init.name] = numpy_helper.to_array(init) if init.data_location == 0 else None
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    info[n.output[0]] = (_type_name(a.t.data_type), list(a.t.dims))
                    constants[n.output[0]] = numpy_helper.to_array(a.t)
            constants.setdefault(n.output[0], None)
    return info, constants


def problems(model) -> list[str]:
    """What onnx-tensorrt would refuse in `model` (an onnx.ModelProto), one line each."""
    from onnx import helper
    g = model.graph
    out: list[str] = []
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx") and o.version not in OPSETS:
            out.append(f"opset {o.version}: TensorRT 10 imports opsets {OPSETS.start} to {OPSETS.stop - 1}")
    info, constants = _tensors(model)
    io = {v.name for v in [*g.input, *g.output]}
    consumed = {i for n in g.node for i in n.input} | {v.name for v in g.output}

    for n in g.node:
        where = f"{n.op_type} {n.name or n.output[0]}"
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.domain not in ("", "ai.onnx"):
            out.append(f"{where}: operator of domain {n.domain!r}: not an ONNX operator TensorRT imports")
            continue
        if n.op_type == "Resize" and attrs.get("antialias", 0):
            out.append(f"{where}: antialiased Resize: TensorRT has no antialiasing (it belongs in the preprocessing)")
            continue
        allowed = OPERATORS.get(n.op_type)
        if allowed is None:
            out.append(f"{where}: {n.op_type} is not among the operators checked against onnx-tensorrt's support "
                       "matrix, so its import is unchecked (see onnx-tensorrt's docs/operators.md; the table is "
                       "OPERATORS in scripts/tensorrt_onnx_rules.py)")
            continue
        typed = n.output[0] if n.op_type in TYPED_BY_OUTPUT else (n.input[0] if n.input else None)
        for name in [typed] + ([n.output[0]] if n.op_type == "Cast" else []):
            t = info.get(name, (None, None))[0] if name else None
            if t is not None and t not in allowed:
                out.append(f"{where}: {t} {'output' if name in n.output else 'input'}; onnx-tensorrt imports "
                           f"{n.op_type} with {', '.join(allowed)}")
        for pos, what in CONSTANT_INPUTS.get(n.op_type, {}).items():
            if len(n.input) > pos and n.input[pos] and n.input[pos] not in constants:
                out.append(f"{where}: its {what} ({n.input[pos]}) must be a constant (an initializer), not computed")
        if n.op_type == "TopK":
            if attrs.get("sorted", 1) != 1:
                out.append(f"{where}: sorted=0; TensorRT imports TopK with sorted=1 only")
            k = constants.get(n.input[1]) if len(n.input) > 1 else None
            if k is not None and int(k.reshape(-1)[0]) >= TOPK_MAX_K:
                out.append(f"{where}: K={int(k.reshape(-1)[0])}; TensorRT's TopK takes K < {TOPK_MAX_K}")
        elif n.op_type == "EyeLike":
            shape = info.get(n.input[0], (None, None))[1]
            if shape is None or any(d is None for d in shape):
                out.append(f"{where}: its input's shape {shape} is not static; TensorRT's EyeLike needs static dimensions")
        elif n.op_type == "Constant":
            bad = sorted(set(attrs) & {"sparse_value", "value_string", "value_strings"})
            if bad:
                out.append(f"{where}: attribute {bad[0]}, which TensorRT does not import")
        elif n.op_type == "LayerNormalization":
            extra = [o for o in n.output[1:] if o and (o in consumed)]
            if extra:
                out.append(f"{where}: uses its Mean / InvStdDev outputs ({', '.join(extra)}); TensorRT imports only Y")
        elif n.op_type == "RoiAlign":
            shape = info.get(n.input[1], (None, None))[1]
            if shape is None or len(shape) != 2 or shape[1] != 4:
                out.append(f"{where}: its boxes ({n.input[1]}) have shape {shape}; TensorRT's importer needs [R, 4] "
                           "with the 4 static")
        elif n.op_type == "Range":
            types = {info.get(i, (None, None))[0] for i in n.input}
            if len(types) != 1:
                out.append(f"{where}: start, limit and delta of different types ({', '.join(sorted(map(str, types)))})")

    for name, (t, _) in sorted(info.items()):
        if t == "UINT8" and name in io:
            continue
        if t not in ELEMENT_TYPES:
            out.append(f"tensor {name}: {t}, which TensorRT does not run"
                       + (" (only as a network input or output)" if t == "UINT8" else ""))
    return out


def constant_eyelike(model) -> int:
    """Replaces, in place, each EyeLike whose input has a static shape by a Constant holding the
    matrix it makes (same output name and node name), then drops the nodes nothing reads any more.
    Returns how many were replaced."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    from onnx.helper import tensor_dtype_to_np_dtype
    info, _ = _tensors(model)
    g = model.graph
    replaced = 0
    for i, n in enumerate(list(g.node)):
        if n.op_type != "EyeLike":
            continue
        t, shape = info.get(n.input[0], (None, None))
        if t is None or shape is None or len(shape) != 2 or any(d is None for d in shape):
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        dtype = tensor_dtype_to_np_dtype(attrs.get("dtype", getattr(TensorProto, t)))
        value = np.eye(shape[0], shape[1], k=attrs.get("k", 0), dtype=dtype)
        g.node.remove(n)
        g.node.insert(i, helper.make_node("Constant", [], [n.output[0]], name=n.name,
                                          value=numpy_helper.from_array(value, n.output[0])))
        replaced += 1
    if replaced:
        _drop_unread(g)
    return replaced


def _drop_unread(g) -> None:
    """Drops nodes none of whose outputs is read (by a node or as a graph output), until none is left."""
    while True:
        read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        dead = [n for n in g.node if not any(o in read for o in n.output if o)]
        if not dead:
            return
        for n in dead:
            g.node.remove(n)


# ---------------------------------------------------------------------------------------------
# Self-test: a graph with every rule-carrying operator in the form the exporter writes (no
# problems), then one change at a time, each of which must be reported.
# ---------------------------------------------------------------------------------------------

def _graph(change: str = ""):
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    def const(name, value):
        return numpy_helper.from_array(np.asarray(value), name)

    inits = [const("axes", np.array([1], np.int64)), const("k", np.array([2 if change != "big_k" else 4000], np.int64)),
             const("zero", np.array(0, np.int64)), const("one", np.array(1, np.int64)),
             const("one_f", np.array(1.0, np.float64 if change == "double" else np.float32)),
             const("ln_scale", np.ones(4, np.float32)), const("batch_index", np.zeros(1, np.int64)),
             const("boxes", np.array([[0, 0, 1, 1]] if change != "boxes3" else [[0, 0, 1]], np.float32))]
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes" if change != "computed_axes" else "n_axes"], ["n1"]),
        helper.make_node("ReduceSum", ["x", "axes"], ["sum"], keepdims=1),
        helper.make_node("TopK", ["x", "k"], ["top", "top_i"], axis=1, sorted=0 if change == "unsorted" else 1),
        helper.make_node("Range", ["zero", "n", "one"], ["rng"]),
        helper.make_node("LayerNormalization", ["x", "ln_scale"],
                         ["ln", "ln_mean"] if change == "ln_mean" else ["ln"], axis=-1),
        helper.make_node("EyeLike", ["square" if change != "dynamic_eye" else "x"], ["eye"]),
        helper.make_node("RoiAlign", ["img", "boxes", "batch_index"], ["roi"], output_height=2, output_width=2),
        helper.make_node("Mul", ["x", "one_f"] if change != "double" else ["one_f", "one_f"], ["scaled"]),
    ]
    if change == "computed_axes":
        nodes.insert(2, helper.make_node("Reshape", ["n", "axes"], ["n_axes"]))
    if change == "unknown_op":
        nodes.append(helper.make_node("Einsum", ["x", "x"], ["ein"], equation="ij,ij->i"))
    if change == "antialias":
        nodes.append(helper.make_node("Resize", ["img", "", "sizes"], ["small"], mode="linear", antialias=1))
        inits.append(const("sizes", np.array([1, 1, 2, 2], np.int64)))
    if change == "custom_domain":
        nodes.append(helper.make_node("Mystery", ["x"], ["m"], domain="com.example"))
    outputs = ["n1", "sum", "top", "rng", "ln", "eye", "roi", "scaled"] + (["ln_mean"] if change == "ln_mean" else [])
    graph = helper.make_graph(
        nodes, "rules",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
         helper.make_tensor_value_info("square", TensorProto.FLOAT, [3, 3]),
         helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outputs], inits)
    opset = 16 if change != "opset" else 21
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]
                              + ([helper.make_opsetid("com.example", 1)] if change == "custom_domain" else []))
    model.ir_version = 8
    return model


SELF_TEST_CASES = {  # change -> what the report must say
    "computed_axes": "its axes (n_axes) must be a constant",
    "big_k": "K=4000; TensorRT's TopK takes K < 3840",
    "unsorted": "sorted=0",
    "ln_mean": "uses its Mean / InvStdDev outputs (ln_mean)",
    "dynamic_eye": "is not static; TensorRT's EyeLike needs static dimensions",
    "boxes3": "its boxes (boxes) have shape [1, 3]",
    "double": "DOUBLE",
    "unknown_op": "Einsum is not among the operators checked",
    "antialias": "antialiased Resize",
    "custom_domain": "operator of domain 'com.example'",
    "opset": "opset 21",
}


def _eyelike_graph(static: bool):
    """The AU head's pattern: an identity matrix sized from a feature tensor's shape, used once."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "one" if static else "zero"], ["n"], axis=0),
        helper.make_node("Concat", ["n", "n"], ["nn"], axis=0),
        helper.make_node("ConstantOfShape", ["nn"], ["zeros"]),
        helper.make_node("EyeLike", ["zeros"], ["eye"], k=1),
        helper.make_node("MatMul", ["x", "eye"], ["y"]),
    ][: 6 if static else 5]  # sized by x's batch axis, the matrix is the output itself
    inits = [numpy_helper.from_array(np.array([1], np.int64), "one"), numpy_helper.from_array(np.array([0], np.int64), "zero")]
    graph = helper.make_graph(nodes, "eyelike", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 4])],
                              [helper.make_tensor_value_info("y" if static else "eye", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def self_test() -> int:
    import copy
    import numpy as np
    from onnx.reference import ReferenceEvaluator
    failures = []
    base = problems(_graph())
    if base:
        failures.append(f"the valid graph was reported: {base}")
    for change, want in SELF_TEST_CASES.items():
        got = problems(_graph(change))
        if not any(want in p for p in got):
            failures.append(f"{change}: expected a problem containing {want!r}, got {got}")
    # constant_eyelike: the static pattern becomes a constant with the same outputs (onnx's reference
    # evaluator on both graphs) and its sizing nodes go; a dynamically sized EyeLike stays.
    before = _eyelike_graph(static=True)
    after = copy.deepcopy(before)
    n = constant_eyelike(after)
    ops = [node.op_type for node in after.graph.node]
    x = np.random.default_rng(0).standard_normal((3, 4, 4)).astype(np.float32)
    same = np.array_equal(ReferenceEvaluator(before).run(None, {"x": x})[0], ReferenceEvaluator(after).run(None, {"x": x})[0])
    if n != 1 or ops != ["Constant", "MatMul"] or not same:
        failures.append(f"constant_eyelike on a static EyeLike: replaced {n}, nodes {ops}, same outputs: {same}")
    dynamic = _eyelike_graph(static=False)
    if constant_eyelike(dynamic) != 0 or "EyeLike" not in [node.op_type for node in dynamic.graph.node]:
        failures.append("constant_eyelike replaced an EyeLike whose size is only known at run time")
    cases = 1 + len(SELF_TEST_CASES) + 2
    for f in failures:
        print(f"FAIL: {f}")
    print(f"tensorrt_onnx_rules self-test: {cases - len(failures)}/{cases} cases passed")
    return 1 if failures else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", type=Path, help="ONNX files to check")
    p.add_argument("--self-test", action="store_true", help="check every rule on small graphs")
    args = p.parse_args(argv)
    if args.self_test:
        return self_test()
    if not args.models:
        p.error("give ONNX files to check, or --self-test")
    import onnx
    status = 0
    for path in args.models:
        found = problems(onnx.load(str(path), load_external_data=False))
        print(f"{path}: {'no problem for TensorRT' if not found else f'{len(found)} problem(s) for TensorRT:'}")
        for line in found:
            print(f"  {line}")
        status = status or (1 if found else 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
