#!/usr/bin/env python3
"""Writes OUT/slow/1/model.onnx: a model that costs real CPU per request, so
that the serve tests can have requests in flight when SIGTERM arrives.

  input  FP32 [N, 16] -> MatMul [16, 1024] (each column copies one input
  column) -> a chain of --pairs x (MatMul P, MatMul P^T) with P a random
  1024 x 1024 permutation matrix -> MatMul [1024, 16] (picks the first 16
  columns) -> output FP32 [N, 16]

Every product is by 0 or 1 and every sum has one non-zero term, so the
output equals the input exactly, whatever the order of the additions: the
tests check the answer with plain equality. The cost is about
2 * N * 1024^2 * 2 * pairs FLOP (N = 256, 12 pairs: 13 GFLOP).

Needs onnx and numpy (Debian's python3-onnx); like scripts/make_models.py
it re-runs itself with /usr/bin/python3 when this interpreter lacks them,
and exits 77 when no interpreter has them, so that tests can skip.
"""
import argparse
import os
import sys

# numpy and onnx as scripts/make_models.py imports them (it re-runs this
# script with /usr/bin/python3, or exits 77), and its finish().
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "scripts"))
from make_models import TensorProto, finish, helper, np, numpy_helper  # noqa: E402

SEED = 20261206
WIDTH = 1024
COLUMNS = 16


def slow_model(pairs):
    rng = np.random.default_rng(SEED)
    spread = np.zeros((COLUMNS, WIDTH), np.float32)
    spread[np.arange(WIDTH) % COLUMNS, np.arange(WIDTH)] = 1
    perm = np.zeros((WIDTH, WIDTH), np.float32)
    perm[np.arange(WIDTH), rng.permutation(WIDTH)] = 1
    pick = np.zeros((WIDTH, COLUMNS), np.float32)
    pick[np.arange(COLUMNS), np.arange(COLUMNS)] = 1
    inits = [numpy_helper.from_array(a, n) for a, n in
             ((spread, "spread"), (perm, "perm"), (perm.T.copy(), "perm_t"),
              (pick, "pick"))]
    nodes = [helper.make_node("MatMul", ["input", "spread"], ["h0"], name="spread")]
    for i in range(pairs):
        nodes.append(helper.make_node("MatMul", ["h%d" % (2 * i), "perm"],
                                      ["h%d" % (2 * i + 1)], name="perm%d" % i))
        nodes.append(helper.make_node("MatMul", ["h%d" % (2 * i + 1), "perm_t"],
                                      ["h%d" % (2 * i + 2)], name="unperm%d" % i))
    nodes.append(helper.make_node("MatMul", ["h%d" % (2 * pairs), "pick"],
                                  ["output"], name="pick"))
    graph = helper.make_graph(
        nodes, "slow",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", COLUMNS])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", COLUMNS])],
        inits)
    return finish(graph, "gpuslice make_slow_model.py")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="model repository to write into")
    parser.add_argument("--pairs", type=int, default=12,
                        help="permutation pairs in the chain (default 12)")
    args = parser.parse_args()
    path = os.path.join(args.out, "slow", "1", "model.onnx")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(slow_model(args.pairs).SerializeToString())
    # Unbatched: without a config the worker autocompletes max_batch_size 4
    # as Triton does, and the tests send 128 rows at once.
    with open(os.path.join(args.out, "slow", "config.json"), "w") as f:
        f.write('{"max_batch_size": 0}\n')


if __name__ == "__main__":
    main()
