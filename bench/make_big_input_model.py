#!/usr/bin/env python3
"""Writes OUT/big1m/1/model.onnx and its config.json: a model whose input
is large and whose work and output are small, so that what a request costs
is mostly moving its input: INPUT0 FP32 [N, 262144] (1 MiB a row) ->
MatMul with a [262144, 1] column of 1/262144 -> OUTPUT0 FP32 [N, 1] (each
row's mean). max_batch_size 4. Used by bench/shm_compare.sh and
tests/gpu/shm_cuda_check.sh.

Needs onnx and numpy; like scripts/make_models.py it re-runs itself with
/usr/bin/python3 when this interpreter lacks them, and exits 77 when no
interpreter has them.
"""
import argparse
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "scripts"))
from make_models import TensorProto, finish, helper, np, numpy_helper  # noqa: E402

WIDTH = 262144


def big_input_model():
    w = np.full((WIDTH, 1), 1.0 / WIDTH, np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["INPUT0", "w"], ["OUTPUT0"], name="mean")],
        "big1m",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["N", WIDTH])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(w, "w")])
    return finish(graph, "gpuslice bench/make_big_input_model.py")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="model repository to write into")
    parser.add_argument("--kind", default="KIND_CPU", help="instance_group kind")
    args = parser.parse_args()
    path = os.path.join(args.out, "big1m", "1", "model.onnx")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(big_input_model().SerializeToString())
    with open(os.path.join(args.out, "big1m", "config.json"), "w") as f:
        f.write('{"max_batch_size": 4, "instance_group": [{"kind": "%s"}]}\n'
                % args.kind)


if __name__ == "__main__":
    main()
