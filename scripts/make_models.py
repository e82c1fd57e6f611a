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
  OUT/resnet50/1/...       (--models all) torchvision's ResNet-50 v1.5
                           (stride on each bottleneck's 3x3 conv) with 102
                           classes, as NVIDIA's MIG flower demo serves: input
                           FP32 [-1, 3, 224, 224] -> output FP32 [-1, 102]
                           logits, in Conv, BatchNormalization (kept: the
                           engine folds them), Relu, Add, MaxPool,
                           GlobalAveragePool, Flatten and Gemm nodes; 23.7 M
                           weights from the fixed seed;
                           OUT/resnet50/config.json: max_batch_size 64 and
                           dynamic batching.
  OUT/cnn_small/1/...      a small CNN for CPU tests: FP32 [-1, 3, 32, 32] ->
                           conv/BN/relu, a residual block, pools -> [-1, 10].
  OUT/NAME/config.json     {"max_batch_size": 0} but for resnet50: served
                           unbatched (without a config the worker would
                           autocomplete max_batch_size 4 as Triton does).

The CNNs' BatchNormalization statistics are set near the ones their inputs
really have on a calibration batch (as training leaves them), so that
activations stay in range through 50 layers and folding BN is really tested.
That pass runs numpy's BLAS, so their bytes are the same run after run on
one machine but may differ in the last bits between machines; their expected
outputs are computed from the model written.

With --test-data DIR it also writes DIR/test_model_simple and
DIR/test_model_mlp laid out as ONNX backend node tests (model.onnx and
test_data_set_N/{input,output}_K.pb, expected outputs computed with numpy),
for tests/engine/run_node_tests; and DIR/test_model_resnet50 (batches 1 and
2) and DIR/test_model_cnn_small (batches 1 and 8) with inputs only: their
expected outputs come from an independent implementation, onnxruntime, with
--onnxruntime-outputs TEST... (run by an interpreter that has it: the tests'
venv).

--models NAME,... (or all) picks the models written; the default is all but
resnet50, which is 95 MB, takes a few seconds to make, and takes a worker
0.3 s and 280 MB to load: the serve tests expect a worker restarted within a
second. --test-data writes all.

Needs the onnx package: Debian's python3-onnx (scripts/install-deps.sh). If
this interpreter lacks it, the script re-runs itself with /usr/bin/python3.
Exit status 77 when no interpreter has onnx, so that tests can skip.
"""
import argparse
import os
import sys

# Also what tests/integration/make_slow_model.py imports: the re-run and the
# message are its own there (sys.argv is the running script's).
try:
    import numpy as np
    import onnx
    from numpy.lib.stride_tricks import sliding_window_view
    from onnx import TensorProto, helper, numpy_helper
except ImportError:
    debian = "/usr/bin/python3"
    if os.path.exists(debian) and os.path.realpath(sys.executable) != os.path.realpath(debian) \
            and not os.environ.get("GS_MAKE_MODELS_REEXEC"):
        os.environ["GS_MAKE_MODELS_REEXEC"] = "1"
        os.execv(debian, [debian] + sys.argv)
    print("%s: the onnx Python package is missing (apt-get install python3-onnx)"
          % (os.path.splitext(os.path.basename(sys.argv[0]))[0] or "make_models"),
          file=sys.stderr)
    sys.exit(77)

OPSET = 13
IR_VERSION = 8  # what onnx 1.12 (Debian 12) writes for opset 13
SEED = 20240601


def finish(graph, producer="gpuslice make_models.py"):
    model = helper.make_model(graph, producer_name=producer,
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


class CnnBuilder:
    """A CNN's nodes and initializers, built layer by layer beside a numpy
    forward pass over a calibration batch. A value is (ONNX name, the
    calibration batch's activations), so each BatchNormalization's running
    statistics can be drawn near the ones its input really has."""

    def __init__(self, seed, calibration):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits = [], []
        self.input = ("input", calibration)

    def _param(self, name, array):
        self.inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def _node(self, op, inputs, name, value, **attrs):
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return (name, value)

    def conv(self, x, name, c_out, k, stride=1, bias=False):
        """k x k, padding k // 2, He-normal weights (over the fan in)."""
        c_in = x[1].shape[1]
        w = (self.rng.standard_normal((c_out, c_in, k, k)) *
             np.sqrt(2 / (c_in * k * k))).astype(np.float32)
        inputs = [x[0], self._param(name + ".weight", w)]
        y = np_conv(x[1], w, stride, k // 2)
        if bias:
            b = (self.rng.standard_normal(c_out) * 0.1).astype(np.float32)
            inputs.append(self._param(name + ".bias", b))
            y += b[None, :, None, None]
        return self._node("Conv", inputs, name, y, kernel_shape=[k, k],
                          strides=[stride, stride], pads=[k // 2] * 4)

    def bn(self, x, name):
        """gamma and beta drawn; the running mean and variance the input's
        own, perturbed: each channel ends at mean about beta, spread about
        gamma, but not exactly (the statistics of one batch never are)."""
        r, v = self.rng, x[1]
        c = v.shape[1]
        mean = v.mean(axis=(0, 2, 3)) + r.normal(0, 0.2, c) * v.std(axis=(0, 2, 3))
        var = v.var(axis=(0, 2, 3)) * r.uniform(0.7, 1.4, c) + 1e-3
        gamma, beta = r.uniform(0.5, 1.5, c), r.normal(0, 0.2, c)
        params = [self._param(name + "." + n, a) for n, a in (
            ("weight", gamma), ("bias", beta), ("running_mean", mean), ("running_var", var))]
        s = (gamma / np.sqrt(var + 1e-5))[None, :, None, None]
        y = ((v - mean[None, :, None, None]) * s + beta[None, :, None, None]).astype(np.float32)
        return self._node("BatchNormalization", [x[0]] + params, name, y, epsilon=1e-5)

    def relu(self, x, name):
        return self._node("Relu", [x[0]], name, np.maximum(x[1], 0))

    def add(self, a, b, name):
        return self._node("Add", [a[0], b[0]], name, a[1] + b[1])

    def maxpool(self, x, name, k, stride, pad):
        v = np.pad(x[1], ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
        y = sliding_window_view(v, (k, k), axis=(2, 3))[:, :, ::stride, ::stride].max(axis=(4, 5))
        return self._node("MaxPool", [x[0]], name, y, kernel_shape=[k, k],
                          strides=[stride, stride], pads=[pad] * 4)

    def head(self, x, classes):
        """GlobalAveragePool, Flatten, Gemm: torchvision's fc init, the bias
        then set so that the calibration batch's mean logits are near 0, as
        a trained classifier's classes are balanced: otherwise the features'
        common part picks one class for every image."""
        pooled = self._node("GlobalAveragePool", [x[0]], "avgpool", x[1].mean(axis=(2, 3), keepdims=True))
        flat = self._node("Flatten", [pooled[0]], "flatten", pooled[1].reshape(len(x[1]), -1), axis=1)
        n_in = flat[1].shape[1]
        bound = 1 / np.sqrt(n_in)
        w = self.rng.uniform(-bound, bound, (classes, n_in))
        b = self.rng.uniform(-bound, bound, classes) - w @ flat[1].mean(axis=0)
        self.nodes.append(helper.make_node(
            "Gemm", [flat[0], self._param("fc.weight", w), self._param("fc.bias", b)],
            ["output"], name="fc", transB=1))

    def model(self, name, chw, classes):
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N"] + list(chw))],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", classes])],
            self.inits)
        return finish(graph)


def np_conv(x, w, stride, pad):
    """Cross-correlation as ONNX's Conv (no dilation, one group), for the
    calibration pass only: the models' expected outputs come from
    onnxruntime, not from this."""
    k = w.shape[2]
    if k == 1:
        return np.einsum("nchw,mc->nmhw", x[:, :, ::stride, ::stride], w[:, :, 0, 0],
                         optimize=True)
    v = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = sliding_window_view(v, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("nchwij,mcij->nmhw", windows, w, optimize=True)


def images(rng, n, size):
    """Test images: per-image colour, coarse blobs and fine noise, so that
    images differ after global pooling as photos do (pure noise would not)."""
    coarse = rng.standard_normal((n, 3, 7, 7))
    up = np.kron(coarse, np.ones((1, 1, size // 7 + 1, size // 7 + 1)))[:, :, :size, :size]
    colour = rng.standard_normal((n, 3, 1, 1)) * 0.5
    return (up + colour + 0.5 * rng.standard_normal((n, 3, size, size))).astype(np.float32)


# ResNet-50's stages: (bottleneck width, blocks, stride of the first block).
RESNET50_STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))
RESNET50_CLASSES = 102  # Oxford 102 Flowers, as NVIDIA's MIG demo


def resnet50_model():
    # Calibrated at full size (2 images, ~3 s): the pooled features, and so
    # the logits' centring, change with the image size.
    b = CnnBuilder(SEED + 2, images(np.random.default_rng(SEED + 3), 2, 224))
    x = b.relu(b.bn(b.conv(b.input, "conv1", 64, 7, stride=2), "bn1"), "relu")
    x = b.maxpool(x, "maxpool", 3, 2, 1)
    for stage, (width, blocks, stride) in enumerate(RESNET50_STAGES, 1):
        for i in range(blocks):
            p = "layer%d.%d." % (stage, i)
            s = stride if i == 0 else 1
            y = b.relu(b.bn(b.conv(x, p + "conv1", width, 1), p + "bn1"), p + "relu1")
            y = b.relu(b.bn(b.conv(y, p + "conv2", width, 3, stride=s), p + "bn2"), p + "relu2")
            y = b.bn(b.conv(y, p + "conv3", 4 * width, 1), p + "bn3")
            if i == 0:  # the shortcut changes width (and stride): 1x1 conv + BN
                x = b.bn(b.conv(x, p + "downsample.0", 4 * width, 1, stride=s),
                         p + "downsample.1")
            x = b.relu(b.add(y, x, p + "add"), p + "relu")
    b.head(x, RESNET50_CLASSES)
    return b.model("resnet50", (3, 224, 224), RESNET50_CLASSES)


def cnn_small_model():
    """conv+BN+relu (a conv with a bias), a residual block, maxpool, a
    strided conv, maxpool, the head: 10 classes from 3x32x32."""
    b = CnnBuilder(SEED + 4, images(np.random.default_rng(SEED + 5), 4, 32))
    x = b.relu(b.bn(b.conv(b.input, "conv1", 16, 3, bias=True), "bn1"), "relu1")
    y = b.relu(b.bn(b.conv(x, "block.conv1", 16, 3), "block.bn1"), "block.relu1")
    y = b.bn(b.conv(y, "block.conv2", 16, 3), "block.bn2")
    x = b.relu(b.add(y, x, "block.add"), "block.relu")
    x = b.maxpool(x, "pool1", 2, 2, 0)
    x = b.relu(b.bn(b.conv(x, "conv2", 32, 3, stride=2), "bn2"), "relu2")
    x = b.maxpool(x, "pool2", 3, 2, 1)
    b.head(x, 10)
    return b.model("cnn_small", (3, 32, 32), 10)


BUILDERS = {"simple": simple_model, "mlp": mlp_model,
            "classifier": lambda: mlp_model("classifier"),
            "resnet50": resnet50_model, "cnn_small": cnn_small_model}
DEFAULT_MODELS = [name for name in BUILDERS if name != "resnet50"]

# max_batch_size 64 as the demo serves ResNet-50, a short queue delay so a
# batch forms under load without holding a lone request long.
RESNET50_CONFIG = """{
  "max_batch_size": 64,
  "dynamic_batching": {"max_queue_delay_microseconds": 2000,
                       "preferred_batch_size": [8, 16, 32, 64]}
}
"""


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


def write_tests(root, simple, mlp, cnns):
    """cnns: (name, model, batch sizes): inputs only, see onnxruntime_outputs."""
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
    for name, model, batches in cnns:
        size = model.graph.input[0].type.tensor_type.shape.dim[2].dim_value
        write_test(root, "test_model_" + name, model,
                   [([("input", images(rng, n, size))], []) for n in batches])


def onnxruntime_outputs(tests):
    """Writes output_K.pb in each test_data_set_N of each test dir: what
    onnxruntime's CPU provider computes from its input_K.pb."""
    try:
        import onnxruntime
    except ImportError:
        print("make_models: --onnxruntime-outputs needs the onnxruntime package "
              "(pip install onnxruntime)", file=sys.stderr)
        sys.exit(1)
    for test in tests:
        session = onnxruntime.InferenceSession(os.path.join(test, "model.onnx"),
                                               providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        for data in sorted(d for d in os.listdir(test) if d.startswith("test_data_set_")):
            data = os.path.join(test, data)
            feed, k = {}, 0
            while os.path.exists(os.path.join(data, "input_%d.pb" % k)):
                t = onnx.TensorProto()
                with open(os.path.join(data, "input_%d.pb" % k), "rb") as f:
                    t.ParseFromString(f.read())
                feed[t.name] = numpy_helper.to_array(t)
                k += 1
            for k, (name, out) in enumerate(zip(names, session.run(names, feed))):
                with open(os.path.join(data, "output_%d.pb" % k), "wb") as f:
                    f.write(numpy_helper.from_array(out, name).SerializeToString())
        print("make_models: %s: expected outputs from onnxruntime %s"
              % (os.path.basename(test), onnxruntime.__version__))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(here, "..", "models"),
                        help="model repository to write (default: models/ in the repo)")
    parser.add_argument("--test-data", metavar="DIR",
                        help="also write node-test style test directories here")
    parser.add_argument("--onnxruntime-outputs", metavar="TEST", nargs="+",
                        help="only fill in the expected outputs of these test "
                        "directories (written by --test-data) with onnxruntime")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help="the models to write, comma-separated, or all "
                        "(default: %s)" % ",".join(DEFAULT_MODELS))
    args = parser.parse_args()
    if args.onnxruntime_outputs:
        onnxruntime_outputs(args.onnxruntime_outputs)
        return
    names = list(BUILDERS) if args.models == "all" else args.models.split(",")
    if set(names) - set(BUILDERS):
        parser.error("--models: the models are " + ", ".join(BUILDERS))
    if args.test_data:
        names = list(BUILDERS)
    models = {name: BUILDERS[name]() for name in names}
    for name, model in models.items():
        write(model, os.path.join(args.out, name, "1", "model.onnx"))
        # A model without a config is autocompleted as Triton does (batch
        # dimension first: max_batch_size 4, dynamic batching); these are
        # served unbatched unless a test or the demo says otherwise.
        with open(os.path.join(args.out, name, "config.json"), "w") as f:
            f.write(RESNET50_CONFIG if name == "resnet50"
                    else '{"max_batch_size": 0}\n')
    if args.test_data:
        write_tests(args.test_data, models["simple"], models["mlp"],
                    [("resnet50", models["resnet50"], (1, 2)),
                     ("cnn_small", models["cnn_small"], (1, 8))])


if __name__ == "__main__":
    main()
