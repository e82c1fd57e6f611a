#!/usr/bin/env python3
"""Writes the models Triton's string and classification examples call, as
ONNX with config.pbtxt (Triton's example repository has them as TensorFlow
or Python models; these have the same names, inputs and outputs):

  OUT/simple_string     INPUT0, INPUT1 STRING [-1, 16] -> Cast to INT32 ->
                        Add / Sub -> Cast to STRING: OUTPUT0, OUTPUT1, as
                        Triton's QA generator (qa/common/gen_qa_models.py)
                        builds its string add/sub models; max_batch_size 8.
  OUT/simple_identity   INPUT0 STRING [-1, -1] -> Identity -> OUTPUT0;
                        max_batch_size 8 (Triton's is a Python model).
  OUT/identity_batched  the same, [-1, 2], with dynamic batching (100 ms
                        queue delay) and every batch size planned at load
                        (gpuslice's warmup parameter; batches padded to
                        them with empty strings).
  OUT/simple_cls        INPUT0 FP32 [-1, 6] -> Identity -> OUTPUT0 (labels
                        from labels.txt), INPUT1 INT32 [-1, 6] -> Identity ->
                        OUTPUT1 (no labels); max_batch_size 8: the
                        classification extension.

Needs onnx and numpy (Debian's python3-onnx: an interpreter without them
re-runs this with /usr/bin/python3); exit status 77 when none has them.
"""
import argparse
import os
import sys

try:
    import onnx
    from onnx import TensorProto, helper
except ImportError:
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    sys.exit(77)


def save(out, name, nodes, inputs, outputs, config, extra=None):
    graph = helper.make_graph(nodes, name, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    os.makedirs(os.path.join(out, name, "1"), exist_ok=True)
    onnx.save(model, os.path.join(out, name, "1", "model.onnx"))
    with open(os.path.join(out, name, "config.pbtxt"), "w") as f:
        f.write(config)
    for fname, text in (extra or {}).items():
        with open(os.path.join(out, name, fname), "w") as f:
            f.write(text)


def tensor(name, dtype, dims):
    return helper.make_tensor_value_info(name, dtype, dims)


def simple_string(out):
    s = TensorProto.STRING
    nodes = [
        helper.make_node("Cast", ["INPUT0"], ["_INPUT0"], to=TensorProto.INT32),
        helper.make_node("Cast", ["INPUT1"], ["_INPUT1"], to=TensorProto.INT32),
        helper.make_node("Add", ["_INPUT0", "_INPUT1"], ["CAST0"]),
        helper.make_node("Sub", ["_INPUT0", "_INPUT1"], ["CAST1"]),
        helper.make_node("Cast", ["CAST0"], ["OUTPUT0"], to=s),
        helper.make_node("Cast", ["CAST1"], ["OUTPUT1"], to=s),
    ]
    io = lambda n: tensor(n, s, ["N", 16])  # noqa: E731
    config = """name: "simple_string"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_STRING dims: [ 16 ] },
  { name: "INPUT1" data_type: TYPE_STRING dims: [ 16 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_STRING dims: [ 16 ] },
  { name: "OUTPUT1" data_type: TYPE_STRING dims: [ 16 ] }
]
"""
    save(out, "simple_string", nodes, [io("INPUT0"), io("INPUT1")],
         [io("OUTPUT0"), io("OUTPUT1")], config)


def simple_identity(out, name="simple_identity", width=-1, batching=""):
    s = TensorProto.STRING
    config = """name: "%s"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [{ name: "INPUT0" data_type: TYPE_STRING dims: [ %d ] }]
output [{ name: "OUTPUT0" data_type: TYPE_STRING dims: [ %d ] }]
%s""" % (name, width, width, batching)
    dims = ["N", "L" if width < 0 else width]
    save(out, name,
         [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
         [tensor("INPUT0", s, dims)], [tensor("OUTPUT0", s, dims)], config)


def simple_cls(out):
    f, i = TensorProto.FLOAT, TensorProto.INT32
    nodes = [
        helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"]),
        helper.make_node("Identity", ["INPUT1"], ["OUTPUT1"]),
    ]
    config = """name: "simple_cls"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_FP32 dims: [ 6 ] },
  { name: "INPUT1" data_type: TYPE_INT32 dims: [ 6 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 6 ] label_filename: "labels.txt" },
  { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 6 ] }
]
"""
    labels = "cat\ndog\nfish\nbird\n\nhorse\n"  # class 4 has no label
    save(out, "simple_cls", nodes,
         [tensor("INPUT0", f, ["N", 6]), tensor("INPUT1", i, ["N", 6])],
         [tensor("OUTPUT0", f, ["N", 6]), tensor("OUTPUT1", i, ["N", 6])],
         config, {"labels.txt": labels})


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    simple_string(args.out)
    simple_identity(args.out)
    simple_identity(args.out, "identity_batched", 2,
                    "dynamic_batching { max_queue_delay_microseconds: 100000 }\n"
                    "parameters { key: \"warmup\" value: { string_value: \"true\" } }\n")
    simple_cls(args.out)


if __name__ == "__main__":
    main()
