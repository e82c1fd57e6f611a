#!/usr/bin/env python3
"""Writes a model repository shaped like the add/sub and identity ONNX models
of Triton's QA generator (qa/common/gen_qa_models.py and
gen_qa_identity_models.py in triton-inference-server/server), from their
description, for gpuslice's engine and worker.

Add/sub models, named onnx[_nobatch]_<in>_<out0>_<out1>: inputs INPUT0 and
INPUT1 of the input type, an Identity each (a Cast to INT32 for INT8, INT16
and STRING inputs), Add and Sub, then a Cast of each to its output type
(OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1; an FP16 output of an
FP16 model through Identity). Batched ones (max_batch_size 8) have a leading
dynamic dimension. Models of FP16, FP32, INT8, INT16 and INT32 also get
versions 2 and 3 with the outputs swapped, and version policies, as Triton's
fixed-shape set has them. Identity models, named onnx[_nobatch]_zero_<n>_<t>:
n inputs INPUTk each through an Identity to OUTPUTk. config.pbtxt files are
written field for field as Triton's generator writes them.

--variable writes the variable-shape set instead of the fixed-shape one (as
Triton's --variable). --no-labels leaves out OUTPUT0's label_filename (and
its file). --test-data DIR also writes, per model version, DIR/<model>_v<n>
with a copy of model.onnx and test_data_set_0 (inputs and the outputs numpy
computes, as TensorProtos) for tests/engine/run_node_tests, and data.npz
(the same by tensor name) for clients; --list prints
each model's name, version, input type, output types and shape.

Needs onnx and numpy; re-runs itself with /usr/bin/python3 (Debian's
python3-onnx) when this interpreter lacks them; exit 77 when none has them.
"""
import argparse
import os
import shutil
import struct
import sys

try:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:
    debian = "/usr/bin/python3"
    if os.path.exists(debian) and os.path.realpath(sys.executable) != \
            os.path.realpath(debian) and not os.environ.get("GS_QA_REEXEC"):
        os.environ["GS_QA_REEXEC"] = "1"
        os.execv(debian, [debian] + sys.argv)
    print("make_qa_models: the onnx Python package is missing "
          "(apt-get install python3-onnx)", file=sys.stderr)
    sys.exit(77)

OPSET = 13
IR_VERSION = 8
SEED = 20261206

# Type names: (Triton's model-name spelling, ONNX type, config's data_type).
TYPES = {
    "int8": ("int8", TensorProto.INT8, "TYPE_INT8"),
    "int16": ("int16", TensorProto.INT16, "TYPE_INT16"),
    "int32": ("int32", TensorProto.INT32, "TYPE_INT32"),
    "int64": ("int64", TensorProto.INT64, "TYPE_INT64"),
    "uint8": ("uint8", TensorProto.UINT8, "TYPE_UINT8"),
    "fp16": ("float16", TensorProto.FLOAT16, "TYPE_FP16"),
    "fp32": ("float32", TensorProto.FLOAT, "TYPE_FP32"),
    "bf16": ("bf16", TensorProto.BFLOAT16, "TYPE_BF16"),
    "bool": ("bool", TensorProto.BOOL, "TYPE_BOOL"),
    "str": ("object", TensorProto.STRING, "TYPE_STRING"),
}
NUMPY = {"int8": np.int8, "int16": np.int16, "int32": np.int32,
         "int64": np.int64, "uint8": np.uint8, "fp16": np.float16,
         "fp32": np.float32, "bool": np.bool_}

# The add/sub combinations of Triton's generator: fixed shape [16] with the
# version policy it gives each, and the variable-shape set.
FIXED = [
    ("uint8", "uint8", "uint8", ("latest", 3)),
    ("int8", "int8", "int8", ("latest", 1)),
    ("int16", "int16", "int16", ("latest", 2)),
    ("int32", "int32", "int32", ("all", None)),
    ("int64", "int64", "int64", None),
    ("fp16", "fp16", "fp16", ("specific", [1])),
    ("fp32", "fp32", "fp32", ("specific", [1, 3])),
    ("fp16", "fp32", "fp32", None),
    ("int32", "int8", "int8", None),
    ("int8", "int32", "int32", None),
    ("int32", "int8", "int16", None),
    ("fp32", "uint8", "uint8", None),
    ("uint8", "fp32", "fp32", None),
    ("fp32", "uint8", "fp16", None),
    ("int32", "fp32", "fp32", None),
    ("fp32", "int32", "int32", None),
    ("int32", "fp16", "int16", None),
    ("str", "int32", "int32", None),
    ("str", "str", "str", None),
    ("str", "int32", "str", None),
    ("str", "str", "int32", None),
    ("int32", "str", "str", None),
    ("int32", "int32", "str", None),
    ("int32", "str", "int32", None),
    ("bf16", "bf16", "bf16", None),
]
SWAPPED = ["fp16", "fp32", "int8", "int16", "int32"]  # versions 2 and 3
VARIABLE = [
    ("fp32", "fp32", "fp32", (-1,)),
    ("fp32", "int32", "int32", (-1, -1)),
    ("fp32", "int64", "int64", (8, -1)),
    ("fp32", "int32", "int64", (-1, 8, -1)),
    ("fp32", "fp32", "int32", (-1,)),
    ("int32", "int32", "int32", (-1, -1)),
    ("int32", "int32", "fp32", (-1, 8, -1)),
    ("str", "str", "str", (-1,)),
    ("str", "int32", "int32", (-1, -1)),
    ("str", "str", "int32", (8, -1)),
    ("str", "int32", "str", (-1, 8, -1)),
    ("bf16", "bf16", "bf16", (-1, -1)),
]
# The identity models: (type, shape, inputs).
IDENTITY = [("bool", (-1,), 1), ("fp32", (-1,), 1), ("fp32", (-1,), 3),
            ("fp16", (-1, -1), 1), ("fp16", (-1, -1), 3), ("str", (-1,), 1),
            ("str", (-1, -1), 3)]


def valid_for_onnx(t_in, t_out0, t_out1):
    """Triton's filter: no UINT8; a STRING input gives STRING or INT32."""
    if "uint8" in (t_in, t_out0, t_out1):
        return False
    return t_in != "str" or (t_out0 in ("str", "int32") and
                             t_out1 in ("str", "int32"))


def dims_onnx(shape, idx):
    """-1 becomes a symbolic dimension var_<idx>, a new name each time."""
    out = []
    for d in shape:
        if d == -1:
            out.append("var_%d" % idx)
            idx += 1
        else:
            out.append(d)
    return out, idx


def save(graph, path):
    model = helper.make_model(graph, producer_name="triton",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    onnx.save(model, path)


def addsub_graph(name, t_in, t_out0, t_out1, shape, batched, swap):
    batch = [None] if batched else []
    s_in, idx = dims_onnx(shape, 0)
    s_out0, idx = dims_onnx(shape, idx)
    s_out1, idx = dims_onnx(shape, idx)
    ty = lambda t: TYPES[t][1]
    ins = [helper.make_tensor_value_info("INPUT%d" % k, ty(t_in), batch + s_in)
           for k in (0, 1)]
    outs = [helper.make_tensor_value_info("OUTPUT0", ty(t_out0), batch + s_out0),
            helper.make_tensor_value_info("OUTPUT1", ty(t_out1), batch + s_out1)]
    if t_in in ("int8", "int16", "str"):  # Add and Sub: computed in INT32
        pre = [helper.make_node("Cast", ["INPUT%d" % k], ["_INPUT%d" % k],
                                to=TensorProto.INT32) for k in (0, 1)]
    else:
        pre = [helper.make_node("Identity", ["INPUT%d" % k], ["_INPUT%d" % k])
               for k in (0, 1)]
    sums = ("CAST1", "CAST0") if swap else ("CAST0", "CAST1")
    nodes = pre + [helper.make_node("Add", ["_INPUT0", "_INPUT1"], [sums[0]]),
                   helper.make_node("Sub", ["_INPUT0", "_INPUT1"], [sums[1]])]
    for k, t in ((0, t_out0), (1, t_out1)):
        if t_in == "fp16" and t == "fp16":
            nodes.append(helper.make_node("Identity", ["CAST%d" % k],
                                          ["OUTPUT%d" % k]))
        else:
            nodes.append(helper.make_node("Cast", ["CAST%d" % k],
                                          ["OUTPUT%d" % k], to=ty(t)))
    return helper.make_graph(nodes, name, ins, outs)


def identity_graph(name, t, shape, n, batched):
    batch = [None] if batched else []
    ins, outs, nodes, idx = [], [], [], 0
    for k in range(n):
        s_in, idx = dims_onnx(shape, idx)
        s_out, idx = dims_onnx(shape, idx)
        ins.append(helper.make_tensor_value_info("INPUT%d" % k, TYPES[t][1],
                                                 batch + s_in))
        outs.append(helper.make_tensor_value_info("OUTPUT%d" % k, TYPES[t][1],
                                                  batch + s_out))
        nodes.append(helper.make_node("Identity", ["INPUT%d" % k],
                                      ["OUTPUT%d" % k]))
    return helper.make_graph(nodes, name, ins, outs)


def policy_text(policy):
    if policy is None:
        return "{ latest { num_versions: 1 }}"
    kind, val = policy
    if kind == "latest":
        return "{ latest { num_versions: %d }}" % val
    if kind == "specific":
        return "{ specific { versions: %s }}" % val
    return "{ all { }}"


def config_text(name, max_batch, policy, ins, outs):
    """config.pbtxt in the layout of Triton's create_general_modelconfig:
    ins and outs are (name, type, shape, label file or None)."""
    text = '\nname: "%s"\nplatform: "onnxruntime_onnx"\nmax_batch_size: %d\n' \
           "version_policy: %s\n\n\n" % (name, max_batch, policy_text(policy))
    for kind, tensors in (("input", ins), ("output", outs)):
        for tname, t, shape, label in tensors:
            text += "\n%s [\n  {\n    name: \"%s\"\n    data_type: %s\n" \
                    "    dims: [ %s ]\n    \n" % (
                        kind, tname, TYPES[t][2],
                        ",".join(str(d) for d in shape))
            if kind == "output":
                text += "    %s\n" % ('label_filename: "%s"' % label
                                      if label else "")
            text += "  }\n]"
    return text


# --- expected answers, computed with numpy ---------------------------------

def bf16_bits(f32):
    """FP32 to BF16 bits, rounding to nearest even (NaN kept NaN)."""
    u = np.asarray(f32, np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(f32, np.float32))
    return np.where(nan, ((u >> 16) | 0x40).astype(np.uint16), r)


def bf16_float(bits):
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


def to_string(values, t):
    """Numbers as ONNX Runtime's Cast writes them."""
    flat = []
    for v in np.asarray(values).ravel():
        if t in ("fp16", "fp32", "bf16"):
            f = float(v)
            flat.append("NaN" if f != f else "INF" if f == float("inf") else
                        "-INF" if f == float("-inf") else "%.8g" % f)
        else:
            flat.append(str(int(v)))
    return np.array(flat, dtype=object).reshape(np.shape(values))


def cast(values, t_from, t_to):
    """numpy's view of Cast: values are in t_from's numpy form (BF16 as
    float32 values, STRING as Python str)."""
    if t_to == "str":
        return to_string(values, t_from)
    if t_to == "bf16":
        return bf16_float(bf16_bits(np.asarray(values, np.float32)))
    return np.asarray(values).astype(NUMPY[t_to])


def sample(t, shape, rng):
    """Inputs whose sums and differences fit every output type used."""
    if t == "str":
        return np.array([str(int(v)) for v in rng.integers(-20, 20, size=shape)
                         .ravel()], dtype=object).reshape(shape)
    if t == "bool":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if t in ("fp16", "fp32"):
        return (rng.integers(-40, 40, size=shape) / 4).astype(NUMPY[t])
    if t == "bf16":
        return bf16_float(bf16_bits((rng.integers(-40, 40, size=shape) / 4)
                                    .astype(np.float32)))
    return rng.integers(-20, 20, size=shape).astype(NUMPY[t])


def addsub_expected(t_in, t_out0, t_out1, a, b, swap):
    compute = "int32" if t_in in ("int8", "int16", "str") else t_in
    a_c = cast(a, t_in, compute) if t_in == "str" else \
        np.asarray(a).astype(np.int32) if compute != t_in else np.asarray(a)
    b_c = cast(b, t_in, compute) if t_in == "str" else \
        np.asarray(b).astype(np.int32) if compute != t_in else np.asarray(b)
    if compute == "bf16":  # computed in FP32, rounded to BF16
        s = bf16_float(bf16_bits(a_c.astype(np.float32) + b_c))
        d = bf16_float(bf16_bits(a_c.astype(np.float32) - b_c))
    else:
        s, d = a_c + b_c, a_c - b_c
    if swap:
        s, d = d, s
    return cast(s, compute, t_out0), cast(d, compute, t_out1)


def tensor_proto(name, values, t):
    if t == "bf16":
        bits = bf16_bits(np.asarray(values, np.float32))
        return helper.make_tensor(name, TensorProto.BFLOAT16, bits.shape,
                                  bits.tobytes(), raw=True)
    if t == "str":
        return helper.make_tensor(
            name, TensorProto.STRING, np.shape(values),
            [s.encode() for s in np.asarray(values).ravel()])
    return numpy_helper.from_array(np.asarray(values).astype(NUMPY[t]), name)


def concrete(shape, batched):
    """A shape to test with: batch 2, each -1 as 3."""
    return ((2,) if batched else ()) + tuple(3 if d == -1 else d for d in shape)


def write_data(dirname, model_path, ins, outs):
    """A node-test directory, plus data.npz (the same tensors by name, BF16
    as float32 values) for clients without onnx."""
    os.makedirs(os.path.join(dirname, "test_data_set_0"), exist_ok=True)
    shutil.copy(model_path, os.path.join(dirname, "model.onnx"))
    np.savez(os.path.join(dirname, "data.npz"),
             **{name: np.asarray(v) for name, v, _ in ins + outs})
    for kind, tensors in (("input", ins), ("output", outs)):
        for k, (name, values, t) in enumerate(tensors):
            path = os.path.join(dirname, "test_data_set_0",
                                "%s_%d.pb" % (kind, k))
            with open(path, "wb") as f:
                f.write(tensor_proto(name, values, t).SerializeToString())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="the model repository")
    p.add_argument("--variable", action="store_true")
    p.add_argument("--no-labels", action="store_true")
    p.add_argument("--test-data", help="node-test directories go here")
    p.add_argument("--list", action="store_true")
    args = p.parse_args()
    rng = np.random.default_rng(SEED)

    def emit(name, version, graph, ins, outs, t_in, t_outs, shape, batched,
             expect):
        path = os.path.join(args.out, name, str(version), "model.onnx")
        save(graph, path)
        if args.list:
            print(name, version, t_in, ",".join(t_outs),
                  "x".join(str(d) for d in shape))
        if not args.test_data:
            return
        shp = concrete(shape, batched)
        values = [sample(t_in, shp, rng) for _ in ins]
        write_data(os.path.join(args.test_data, "%s_v%d" % (name, version)),
                   path, [("INPUT%d" % k, v, t_in) for k, v in enumerate(values)],
                   [("OUTPUT%d" % k, v, t_outs[k])
                    for k, v in enumerate(expect(values))])

    def addsub(t_in, t_out0, t_out1, shape, policy, versions):
        if not valid_for_onnx(t_in, t_out0, t_out1):
            return
        for batched in (True, False):
            name = "%s_%s_%s_%s" % ("onnx" if batched else "onnx_nobatch",
                                    TYPES[t_in][0], TYPES[t_out0][0],
                                    TYPES[t_out1][0])
            for v in versions:
                swap = v > 1
                g = addsub_graph(name, t_in, t_out0, t_out1, shape, batched,
                                 swap)
                emit(name, v, g, [0, 1], [0, 1], t_in, [t_out0, t_out1], shape,
                     batched, lambda x, swap=swap: addsub_expected(
                         t_in, t_out0, t_out1, x[0], x[1], swap))
            label = None if args.no_labels else "output0_labels.txt"
            cfg = config_text(name, 8 if batched else 0, policy,
                              [("INPUT0", t_in, shape, None),
                               ("INPUT1", t_in, shape, None)],
                              [("OUTPUT0", t_out0, shape, label),
                               ("OUTPUT1", t_out1, shape, None)])
            with open(os.path.join(args.out, name, "config.pbtxt"), "w") as f:
                f.write(cfg)
            if label:
                with open(os.path.join(args.out, name, label), "w") as f:
                    f.write("".join("label%d\n" % i for i in range(16)))

    def identity(t, shape, n):
        for batched in (True, False):
            name = "%s_zero_%d_%s" % ("onnx" if batched else "onnx_nobatch", n,
                                      TYPES[t][0])
            emit(name, 1, identity_graph(name, t, shape, n, batched),
                 list(range(n)), list(range(n)), t, [t] * n, shape, batched,
                 lambda x: x)
            cfg = config_text(name, 8 if batched else 0, None,
                              [("INPUT%d" % k, t, shape, None)
                               for k in range(n)],
                              [("OUTPUT%d" % k, t, shape, None)
                               for k in range(n)])
            with open(os.path.join(args.out, name, "config.pbtxt"), "w") as f:
                f.write(cfg)

    if args.variable:
        for t_in, t_out0, t_out1, shape in VARIABLE:
            addsub(t_in, t_out0, t_out1, shape, None, [1])
    else:
        for t_in, t_out0, t_out1, policy in FIXED:
            versions = [1, 2, 3] if (t_in == t_out0 == t_out1 and
                                     t_in in SWAPPED) else [1]
            addsub(t_in, t_out0, t_out1, (16,), policy, versions)
        for t, shape, n in IDENTITY:
            identity(t, shape, n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
