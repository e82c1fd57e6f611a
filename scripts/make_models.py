#!/usr/bin/env python3
"""Builds the ONNX models that gpuslice's tests and demo serve.

  OUT/simple/1/model.onnx  Triton's classic `simple`: INPUT0 and INPUT1, INT32
                           [-1, 16]; OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 =
                           INPUT0 - INPUT1.
  OUT/mlp/1/model.onnx     a small MLP classifier: input FP32 [-1, 64] ->
                           Gemm 64x256 -> Relu -> Gemm 256x10 -> Softmax ->
                           probabilities FP32 [-1, 10]; weights from a fixed
                           seed, so every run writes the same bytes.
  OUT/classifier/1/...     the demo's model: the same shape of MLP, larger:
                           FP32 [-1, 512] -> 2048 -> 100 (1.2 M weights), so
                           a request costs real compute on a CPU core.

With --test-data DIR it also writes DIR/test_model_simple and
DIR/test_model_mlp laid out as ONNX backend node tests (model.onnx and
test_data_set_N/{input,output}_K.pb, expected outputs computed with numpy),
for tests/engine/run_node_tests.

Needs the onnx package: Debian's python3-onnx (scripts/install-deps.sh). If
this interpreter lacks it, the script re-runs itself with /usr/bin/python3.
Exit status 77 when no interpreter has onnx, so that tests can skip.
"""
import argparse
import os
import sys

try:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:
    debian = "/usr/bin/python3"
    if os.path.exists(debian) and os.path.realpath(sys.executable) != os.path.realpath(debian) \
            and not os.environ.get("GS_MAKE_MODELS_REEXEC"):
        os.environ["GS_MAKE_MODELS_REEXEC"] = "1"
        os.execv(debian, [debian] + sys.argv)
    print("make_models: the onnx Python package is missing "
          "(apt-get install python3-onnx)", file=sys.stderr)
    sys.exit(77)

OPSET = 13
IR_VERSION = 8  # what onnx 1.12 (Debian 12) writes for opset 13
SEED = 20240601


def finish(graph):
    model = helper.make_model(graph, producer_name="gpuslice make_models.py",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def simple_model():
    io = lambda name: helper.make_tensor_value_info(name, TensorProto.INT32, ["N", 16])
    graph = helper.make_graph(
        [helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"], name="add"),
         helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"], name="sub")],
        "simple", [io("INPUT0"), io("INPUT1")], [io("OUTPUT0"), io("OUTPUT1")])
    return finish(graph)


# (inputs, hidden, classes): `mlp` is the tests' small one; `classifier` is
# the demo's, big enough (1.2 M weights, ~2.5 MFLOP per row) that a request
# costs real compute on a CPU core, as ResNet-50 does on a GPU slice.
MLP_SIZES = {"mlp": (64, 256, 10), "classifier": (512, 2048, 100)}


def mlp_weights(name="mlp"):
    n_in, n_hidden, n_out = MLP_SIZES[name]
    rng = np.random.default_rng(SEED)
    # He initialisation; weights stored [out, in] as PyTorch exports them.
    w1 = (rng.standard_normal((n_hidden, n_in)) * np.sqrt(2 / n_in)).astype(np.float32)
    b1 = (rng.standard_normal(n_hidden) * 0.01).astype(np.float32)
    w2 = (rng.standard_normal((n_out, n_hidden)) * np.sqrt(2 / n_hidden)).astype(np.float32)
    b2 = (rng.standard_normal(n_out) * 0.01).astype(np.float32)
    return w1, b1, w2, b2


def mlp_model(name="mlp"):
    n_in, _, n_out = MLP_SIZES[name]
    w1, b1, w2, b2 = mlp_weights(name)
    inits = [numpy_helper.from_array(a, n) for a, n in
             ((w1, "fc1.weight"), (b1, "fc1.bias"), (w2, "fc2.weight"), (b2, "fc2.bias"))]
    nodes = [
        helper.make_node("Gemm", ["input", "fc1.weight", "fc1.bias"], ["hidden"],
                         name="fc1", transB=1),
        helper.make_node("Relu", ["hidden"], ["hidden_relu"], name="relu1"),
        helper.make_node("Gemm", ["hidden_relu", "fc2.weight", "fc2.bias"], ["logits"],
                         name="fc2", transB=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", n_in])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", n_out])],
        inits)
    return finish(graph)


def mlp_reference(x):
    w1, b1, w2, b2 = (a.astype(np.float64) for a in mlp_weights())
    h = np.maximum(x.astype(np.float64) @ w1.T + b1, 0)
    z = h @ w2.T + b2
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def write(model, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())


def write_test(root, name, model, sets):
    """sets: list of (inputs, outputs), each a list of (name, array)."""
    test = os.path.join(root, name)
    write(model, os.path.join(test, "model.onnx"))
    for i, (inputs, outputs) in enumerate(sets):
        data = os.path.join(test, "test_data_set_%d" % i)
        os.makedirs(data, exist_ok=True)
        for kind, tensors in (("input", inputs), ("output", outputs)):
            for k, (tname, arr) in enumerate(tensors):
                with open(os.path.join(data, "%s_%d.pb" % (kind, k)), "wb") as f:
                    f.write(numpy_helper.from_array(arr, tname).SerializeToString())


def write_tests(root, simple, mlp):
    rng = np.random.default_rng(SEED + 1)
    sets = []
    for n in (1, 4):
        a = rng.integers(-1000, 1000, (n, 16), dtype=np.int32)
        b = rng.integers(-1000, 1000, (n, 16), dtype=np.int32)
        sets.append(([("INPUT0", a), ("INPUT1", b)],
                     [("OUTPUT0", a + b), ("OUTPUT1", a - b)]))
    write_test(root, "test_model_simple", simple, sets)
    sets = []
    for n in (1, 8):
        x = rng.standard_normal((n, 64)).astype(np.float32)
        sets.append(([("input", x)], [("probabilities", mlp_reference(x))]))
    write_test(root, "test_model_mlp", mlp, sets)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(here, "..", "models"),
                        help="model repository to write (default: models/ in the repo)")
    parser.add_argument("--test-data", metavar="DIR",
                        help="also write node-test style test directories here")
    args = parser.parse_args()
    simple, mlp = simple_model(), mlp_model()
    write(simple, os.path.join(args.out, "simple", "1", "model.onnx"))
    write(mlp, os.path.join(args.out, "mlp", "1", "model.onnx"))
    write(mlp_model("classifier"),
          os.path.join(args.out, "classifier", "1", "model.onnx"))
    if args.test_data:
        write_tests(args.test_data, simple, mlp)


if __name__ == "__main__":
    main()
