#!/usr/bin/env python3
"""Models Triton's client examples call that no other generator writes.

  OUT/densenet_onnx   the inputs and outputs of Triton's example densenet_onnx
                      (whose weights do not ship), with its config's
                      reshapes: data_0 FP32 [1,3,224,224] in the model,
                      [3,224,224] FORMAT_NCHW in requests -> GlobalAverage-
                      Pool -> 1x1 Conv 3->1000 -> fc6_1 [1,1000,1,1] in the
                      model, [1000] in answers; labels from
                      densenet_labels.txt; max_batch_size 0.
  OUT/inception_onnx  the inputs and outputs of Triton's example
                      inception_onnx (no weights ship either) with its
                      config's reshapes: "input:0" FP32 [1,299,299,3] in the
                      model, [299,299,3] FORMAT_NHWC in requests ->
                      Transpose -> GlobalAveragePool -> Flatten -> MatMul
                      3->1001 -> Softmax -> "InceptionV3/Predictions/
                      Softmax:0" [1,1001] in the model, [1001] in answers.
  OUT/reshape_batch   a reshape with a batch and a variable size: x FP32
                      [N,K,2,3] in the model, dims [-1,6] in requests ->
                      Mul 2 -> y the same way back; max_batch_size 4,
                      dynamic batching with preferred sizes and a queue
                      policy (DELAY), two CPU instances.
  OUT/image_nhwc      INPUT FP32 [-1,4,4,3] FORMAT_NHWC -> Flatten -> OUTPUT,
                      max_batch_size 2: the other format image_client takes.
  --refused           adds models only Triton's Python or TensorFlow
                      backends run (py_model, tf_graphdef, tf_savedmodel,
                      tf_backend), each an ONNX file the worker must still
                      refuse by its config's backend or platform.

Needs onnx and numpy; exit status 77 without them.
"""
import argparse
import os
import sys

try:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    sys.exit(77)


def save(out, name, graph, config, files=None):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    os.makedirs(os.path.join(out, name, "1"), exist_ok=True)
    onnx.save(model, os.path.join(out, name, "1", "model.onnx"))
    with open(os.path.join(out, name, "config.pbtxt"), "w") as f:
        f.write(config)
    for fname, text in (files or {}).items():
        with open(os.path.join(out, name, fname), "w") as f:
            f.write(text)


def densenet(out):
    w = np.linspace(-1, 1, 3000, dtype=np.float32).reshape(1000, 3, 1, 1)
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["data_0"], ["pooled"]),
         helper.make_node("Conv", ["pooled", "w"], ["fc6_1"])],
        "densenet_onnx",
        [helper.make_tensor_value_info("data_0", TensorProto.FLOAT,
                                       [1, 3, 224, 224])],
        [helper.make_tensor_value_info("fc6_1", TensorProto.FLOAT,
                                       [1, 1000, 1, 1])],
        [numpy_helper.from_array(w, "w")])
    config = """name: "densenet_onnx"
platform: "onnxruntime_onnx"
max_batch_size : 0
input [ { name: "data_0" data_type: TYPE_FP32 format: FORMAT_NCHW
          dims: [ 3, 224, 224 ] reshape { shape: [ 1, 3, 224, 224 ] } } ]
output [ { name: "fc6_1" data_type: TYPE_FP32 dims: [ 1000 ]
           reshape { shape: [ 1, 1000, 1, 1 ] }
           label_filename: "densenet_labels.txt" } ]
"""
    labels = "".join("CLASS_%d\n" % i for i in range(1000))
    save(out, "densenet_onnx", graph, config, {"densenet_labels.txt": labels})


def inception(out):
    w = np.linspace(-1, 1, 3003, dtype=np.float32).reshape(3, 1001)
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["input:0"], ["nchw"], perm=[0, 3, 1, 2]),
         helper.make_node("GlobalAveragePool", ["nchw"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"],
                          ["InceptionV3/Predictions/Softmax:0"], axis=1)],
        "inception_onnx",
        [helper.make_tensor_value_info("input:0", TensorProto.FLOAT,
                                       [1, 299, 299, 3])],
        [helper.make_tensor_value_info("InceptionV3/Predictions/Softmax:0",
                                       TensorProto.FLOAT, [1, 1001])],
        [numpy_helper.from_array(w, "w")])
    config = """name: "inception_onnx"
platform: "onnxruntime_onnx"
max_batch_size: 0
input [ { name: "input:0" data_type: TYPE_FP32 format: FORMAT_NHWC
          dims: [ 299, 299, 3 ] reshape { shape: [ 1, 299, 299, 3 ] } } ]
output [ { name: "InceptionV3/Predictions/Softmax:0" data_type: TYPE_FP32
           dims: [ 1001 ] reshape { shape: [ 1, 1001 ] }
           label_filename: "inception_labels.txt" } ]
"""
    labels = "".join("LABEL_%d\n" % i for i in range(1001))
    save(out, "inception_onnx", graph, config, {"inception_labels.txt": labels})


def reshape_batch(out):
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])], "reshape_batch",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "K", 2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "K", 2, 3])],
        [numpy_helper.from_array(np.array(2, np.float32), "two")])
    config = """name: "reshape_batch"
max_batch_size: 4
dynamic_batching {
  preferred_batch_size: [ 2, 4 ] max_queue_delay_microseconds: 2000
  default_queue_policy { timeout_action: DELAY allow_timeout_override: true
    default_timeout_microseconds: 5000000 max_queue_size: 16 }
}
instance_group [ { count: 2 kind: KIND_CPU } ]
input [ { name: "x" data_type: TYPE_FP32 dims: [ -1, 6 ]
          reshape { shape: [ -1, 2, 3 ] } } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ -1, 6 ]
           reshape { shape: [ -1, 2, 3 ] } } ]
parameters { key: "execute_delay_ms" value: { string_value: "3" } }
"""
    save(out, "reshape_batch", graph, config)


def image_nhwc(out):
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["INPUT"], ["OUTPUT"])], "image_nhwc",
        [helper.make_tensor_value_info("INPUT", TensorProto.FLOAT, ["N", 4, 4, 3])],
        [helper.make_tensor_value_info("OUTPUT", TensorProto.FLOAT, ["N", 48])])
    config = """name: "image_nhwc"
max_batch_size: 2
input [ { name: "INPUT" data_type: TYPE_FP32 format: FORMAT_NHWC dims: [ 4, 4, 3 ] } ]
output [ { name: "OUTPUT" data_type: TYPE_FP32 dims: [ 48 ] } ]
"""
    save(out, "image_nhwc", graph, config)


REFUSED = {"py_model": 'backend: "python"',
           "tf_graphdef": 'platform: "tensorflow_graphdef"',
           "tf_savedmodel": 'platform: "tensorflow_savedmodel"',
           "tf_backend": 'backend: "tensorflow"'}


def refused(out):
    for name, line in REFUSED.items():
        graph = helper.make_graph(
            [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])], name,
            [helper.make_tensor_value_info("INPUT0", TensorProto.INT32, ["N", 4])],
            [helper.make_tensor_value_info("OUTPUT0", TensorProto.INT32, ["N", 4])])
        config = ('name: "%s"\n%s\nmax_batch_size: 8\n'
                  'input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 4 ] } ]\n'
                  'output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 4 ] } ]\n'
                  % (name, line))
        save(out, name, graph, config)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--refused", action="store_true")
    a = ap.parse_args()
    densenet(a.out)
    inception(a.out)
    reshape_batch(a.out)
    image_nhwc(a.out)
    if a.refused:
        refused(a.out)


if __name__ == "__main__":
    main()
