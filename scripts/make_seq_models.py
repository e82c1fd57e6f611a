#!/usr/bin/env python3
"""Sequence models for gpuslice's sequence batcher, written with onnx.

  OUT/simple_sequence       Triton's example `simple_sequence` as the ONNX
                            model Triton's repository ships: inputs INPUT,
                            START, READY (INT32 [-1, 1]); OUTPUT =
                            READY * (INPUT + START). Triton's sequence client
                            examples expect exactly this (1 and 101 first).
  OUT/simple_dyna_sequence  Triton's `simple_dyna_sequence` (oldest strategy,
                            END and CORRID controls): OUTPUT = READY * (INPUT
                            + START + END * CORRID). CORRID is TYPE_INT32
                            here: Triton's ONNX casts a UINT64 CORRID, and
                            gpuslice's engine has no Cast yet.
  OUT/simple_string_dyna_sequence  what Triton's custom dyna backend does
                            for the examples' string ids ("1002"): OUTPUT =
                            STATE_IN + INPUT + END * CORRID, STATE_OUT =
                            OUTPUT (implicit state; CORRID is the id read as
                            a number, TYPE_INT32 here, not TYPE_STRING).
  OUT/sequence_oldest, sequence_oldest_two  the oldest strategy batching
                            sequences (max_candidate_sequences 8 and 2,
                            preferred_batch_size 4 and 2, 2 s queue delay):
                            STATE_OUT = STATE_IN + INPUT + 1000 * START,
                            OUTPUT = READY * (STATE_OUT + END * CORRID).
  OUT/big_identity          not a sequence model: OUTPUT = Identity(INPUT),
                            FP32 [-1, -1], for large answers on a stream.
  OUT/sequence_accumulate   implicit state: OUTPUT = STATE_IN + INPUT,
                            STATE_OUT = OUTPUT; the batcher feeds STATE_OUT
                            back as STATE_IN, zeros at START.

Usage: make_seq_models.py --out DIR. Exit 77 when the onnx package is
missing (tests skip)."""
import argparse
import os
import sys

try:
    import onnx
    from onnx import TensorProto, helper
except ImportError:  # as make_models.py: Debian's python3-onnx, once
    debian = "/usr/bin/python3"
    if os.path.exists(debian) and os.path.realpath(sys.executable) != os.path.realpath(debian) \
            and not os.environ.get("GS_MAKE_MODELS_REEXEC"):
        os.environ["GS_MAKE_MODELS_REEXEC"] = "1"
        os.execv(debian, [debian] + sys.argv)
    print("make_seq_models.py: the onnx Python package is missing", file=sys.stderr)
    sys.exit(77)

OPSET = 13
IR_VERSION = 8


def vi(name, elem=TensorProto.INT32):
    return helper.make_tensor_value_info(name, elem, ["N", 1])


def model(nodes, name, inputs, outputs):
    graph = helper.make_graph(nodes, name, [vi(n) for n in inputs],
                              [vi(n) for n in outputs])
    m = helper.make_model(graph, producer_name="gpuslice make_seq_models.py",
                          opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = IR_VERSION
    onnx.checker.check_model(m)
    return m


def control(name, kind, body='int32_false_true: [ 0, 1 ]'):
    return ('    {\n      name: "%s"\n      control [ { kind: %s %s } ]\n    }'
            % (name, kind, body))


def config(name, max_batch, sequence, instances=1):
    return """name: "%s"
platform: "onnxruntime_onnx"
max_batch_size: %d
sequence_batching {
%s
}
input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
instance_group [ { count: %d kind: KIND_CPU } ]
""" % (name, max_batch, sequence, instances)


def simple_sequence():
    nodes = [helper.make_node("Identity", ["INPUT"], ["_INPUT"]),
             helper.make_node("Add", ["_INPUT", "START"], ["add"]),
             helper.make_node("Mul", ["READY", "add"], ["OUTPUT"])]
    seq = "  control_input [\n%s,\n%s\n  ]" % (
        control("START", "CONTROL_SEQUENCE_START"),
        control("READY", "CONTROL_SEQUENCE_READY"))
    return (model(nodes, "simple_sequence", ["INPUT", "START", "READY"],
                  ["OUTPUT"]),
            config("simple_sequence", 8, seq))


def simple_dyna_sequence():
    nodes = [helper.make_node("Add", ["INPUT", "START"], ["add0"]),
             helper.make_node("Mul", ["END", "CORRID"], ["mul0"]),
             helper.make_node("Add", ["add0", "mul0"], ["sum0"]),
             helper.make_node("Mul", ["READY", "sum0"], ["OUTPUT"])]
    seq = """  max_sequence_idle_microseconds: 10000000
  oldest {
    max_candidate_sequences: 1024
    max_queue_delay_microseconds: 10000
  }
  control_input [
%s,
%s,
%s,
%s
  ]""" % (control("START", "CONTROL_SEQUENCE_START"),
          control("END", "CONTROL_SEQUENCE_END"),
          control("READY", "CONTROL_SEQUENCE_READY"),
          control("CORRID", "CONTROL_SEQUENCE_CORRID", "data_type: TYPE_INT32"))
    return (model(nodes, "simple_dyna_sequence",
                  ["INPUT", "START", "END", "READY", "CORRID"], ["OUTPUT"]),
            config("simple_dyna_sequence", 8, seq, instances=2))


STATE = """  state [
    {
      input_name: "STATE_IN"
      output_name: "STATE_OUT"
      data_type: TYPE_INT32
      dims: [ 1 ]
      initial_state: { data_type: TYPE_INT32 dims: [ 1 ] zero_data: true name: "zero" }
    }
  ]"""


def simple_string_dyna_sequence():
    nodes = [helper.make_node("Add", ["STATE_IN", "INPUT"], ["acc"]),
             helper.make_node("Mul", ["END", "CORRID"], ["mul0"]),
             helper.make_node("Add", ["acc", "mul0"], ["OUTPUT"]),
             helper.make_node("Identity", ["OUTPUT"], ["STATE_OUT"])]
    seq = """  oldest { max_candidate_sequences: 64 }
  control_input [
%s,
%s
  ]
%s""" % (control("END", "CONTROL_SEQUENCE_END"),
         control("CORRID", "CONTROL_SEQUENCE_CORRID", "data_type: TYPE_INT32"),
         STATE)
    return (model(nodes, "simple_string_dyna_sequence",
                  ["INPUT", "STATE_IN", "END", "CORRID"],
                  ["OUTPUT", "STATE_OUT"]),
            config("simple_string_dyna_sequence", 8, seq))


def sequence_accumulate(idle_us):
    nodes = [helper.make_node("Add", ["STATE_IN", "INPUT"], ["OUTPUT"]),
             helper.make_node("Identity", ["OUTPUT"], ["STATE_OUT"])]
    seq = """  max_sequence_idle_microseconds: %d
  direct { }
  control_input [
%s
  ]
  state [
    {
      input_name: "STATE_IN"
      output_name: "STATE_OUT"
      data_type: TYPE_INT32
      dims: [ 1 ]
      initial_state: { data_type: TYPE_INT32 dims: [ 1 ] zero_data: true name: "zero" }
    }
  ]""" % (idle_us, control("READY", "CONTROL_SEQUENCE_READY"))
    return (model(nodes, "sequence_accumulate", ["INPUT", "STATE_IN", "READY"],
                  ["OUTPUT", "STATE_OUT"]),
            config("sequence_accumulate", 4, seq))


def accumulate_oldest(name, candidates, preferred, delay_us):
    """Triton's oldest strategy batching sequences: ACC = STATE_IN + INPUT +
    1000 * START, STATE_OUT = ACC, OUTPUT = READY * (ACC + END * CORRID);
    each row of a batch has its own controls and state."""
    nodes = [helper.make_node("Add", ["STATE_IN", "INPUT"], ["acc0"]),
             helper.make_node("Mul", ["START", "THOUSAND"], ["start0"]),
             helper.make_node("Add", ["acc0", "start0"], ["STATE_OUT"]),
             helper.make_node("Mul", ["END", "CORRID"], ["end0"]),
             helper.make_node("Add", ["STATE_OUT", "end0"], ["sum0"]),
             helper.make_node("Mul", ["READY", "sum0"], ["OUTPUT"])]
    graph = helper.make_graph(
        nodes, name,
        [vi(n) for n in ("INPUT", "STATE_IN", "START", "END", "READY", "CORRID")],
        [vi(n) for n in ("OUTPUT", "STATE_OUT")],
        initializer=[helper.make_tensor("THOUSAND", TensorProto.INT32, [], [1000])])
    m = helper.make_model(graph, producer_name="gpuslice make_seq_models.py",
                          opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = IR_VERSION
    onnx.checker.check_model(m)
    seq = """  max_sequence_idle_microseconds: 5000000
  oldest {
    max_candidate_sequences: %d
    preferred_batch_size: [ %d ]
    max_queue_delay_microseconds: %d
  }
  control_input [
%s,
%s,
%s,
%s
  ]
%s""" % (candidates, preferred, delay_us,
         control("START", "CONTROL_SEQUENCE_START"),
         control("END", "CONTROL_SEQUENCE_END"),
         control("READY", "CONTROL_SEQUENCE_READY"),
         control("CORRID", "CONTROL_SEQUENCE_CORRID", "data_type: TYPE_INT32"),
         STATE)
    return m, config(name, 8, seq)


def big_identity():
    io = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", "M"])
    graph = helper.make_graph([helper.make_node("Identity", ["INPUT"], ["OUTPUT"])],
                              "big_identity", [io("INPUT")], [io("OUTPUT")])
    m = helper.make_model(graph, producer_name="gpuslice make_seq_models.py",
                          opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = IR_VERSION
    onnx.checker.check_model(m)
    return m, 'name: "big_identity"\nmax_batch_size: 0\n'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--idle-us", type=int, default=500000,
                    help="sequence_accumulate's max_sequence_idle_microseconds")
    args = ap.parse_args()
    for m, cfg in (simple_sequence(), simple_dyna_sequence(),
                   simple_string_dyna_sequence(), big_identity(),
                   sequence_accumulate(args.idle_us),
                   accumulate_oldest("sequence_oldest", 8, 4, 2000000),
                   accumulate_oldest("sequence_oldest_two", 2, 2, 2000000)):
        d = os.path.join(args.out, m.graph.name)
        os.makedirs(os.path.join(d, "1"), exist_ok=True)
        onnx.save(m, os.path.join(d, "1", "model.onnx"))
        with open(os.path.join(d, "config.pbtxt"), "w") as f:
            f.write(cfg)


if __name__ == "__main__":
    main()
