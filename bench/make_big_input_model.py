#!/usr/bin/env python3
"""Writes OUT/big1m/1/model.onnx and its config.json: a model whose input
is large and whose work and output are small, so that what a request costs
is mostly moving its input: INPUT0 FP32 [N, 262144] (1 MiB a row) ->
MatMul with a [262144, 1] column of 1/262144 -> OUTPUT0 FP32 [N, 1] (each
row's mean). max_batch_size 4. Used by bench/shm_compare.sh and
tests/gpu/shm_cuda_check.sh. --width and --name give other sizes (the GPU
check's big16m: --width 4194304, 16 MiB a row).

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


def big_input_model(width=WIDTH, name="big1m"):
    w = np.full((width, 1), 1.0 / width, np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["INPUT0", "w"], ["OUTPUT0"], name="mean")],
        name,
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(w, "w")])
    return finish(graph, "gpuslice bench/make_big_input_model.py")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="model repository to write into")
    parser.add_argument("--kind", default="KIND_CPU", help="instance_group kind")
    parser.add_argument("--width", type=int, default=WIDTH, help="FP32 elements a row")
    parser.add_argument("--name", default="big1m", help="the model's name")
    args = parser.parse_args()
    path = os.path.join(args.out, args.name, "1", "model.onnx")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(big_input_model(args.width, args.name).SerializeToString())
    with open(os.path.join(args.out, args.name, "config.json"), "w") as f:
        f.write('{"max_batch_size": 4, "instance_group": [{"kind": "%s"}]}\n'
                % args.kind)


if __name__ == "__main__":
    main()
