#!/usr/bin/env python3
"""Model repositories for test_triton_repo.sh, written with onnx alone.

  OUT/simple/1/model.onnx   Triton's `simple` (INPUT0, INPUT1 INT32 [16];
                            OUTPUT0 = sum, OUTPUT1 = difference) with its
                            config.pbtxt (max_batch_size 8)
  OUT/versioned/{1,2,3}/    the same graph; version 2 swaps the outputs
                            (OUTPUT0 = difference), so a reply tells which
                            version answered; config.pbtxt: version_policy
                            specific [1, 2]
  --names A,B,...           more directories holding `simple`'s model and
                            no config (Triton's example repository has 7 or
                            8 models; its examples count them)

Exits 77 when onnx is missing (the test skips).
"""
import argparse
import os
import sys

try:
    from onnx import TensorProto, checker, helper
except ImportError:
    sys.exit(77)

SIMPLE_CONFIG = """name: "%s"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] }
]
"""


def add_sub(swapped=False):
    def io(name):
        return helper.make_tensor_value_info(name, TensorProto.INT32, ["N", 16])
    outs = ["OUTPUT1", "OUTPUT0"] if swapped else ["OUTPUT0", "OUTPUT1"]
    graph = helper.make_graph(
        [helper.make_node("Add", ["INPUT0", "INPUT1"], [outs[0]], name="add"),
         helper.make_node("Sub", ["INPUT0", "INPUT1"], [outs[1]], name="sub")],
        "simple", [io("INPUT0"), io("INPUT1")], [io("OUTPUT0"), io("OUTPUT1")])
    model = helper.make_model(graph, producer_name="gpuslice test",
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    checker.check_model(model)
    return model


def write(root, name, version, model, config=None):
    d = os.path.join(root, name, str(version))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "model.onnx"), "wb") as f:
        f.write(model.SerializeToString())
    if config is not None:
        with open(os.path.join(root, name, "config.pbtxt"), "w") as f:
            f.write(config)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--names", default="")
    p.add_argument("--no-versioned", action="store_true")
    a = p.parse_args()
    write(a.out, "simple", 1, add_sub(), SIMPLE_CONFIG % "simple")
    if not a.no_versioned:
        for v in (1, 2, 3):
            write(a.out, "versioned", v, add_sub(swapped=v == 2),
                  (SIMPLE_CONFIG % "versioned") +
                  "version_policy: { specific: { versions: [ 1, 2 ] } }\n")
    for name in filter(None, a.names.split(",")):
        write(a.out, name, 1, add_sub())


if __name__ == "__main__":
    main()
