"""ONNX Runtime session options shared by every bundled predictor."""

from __future__ import annotations

import onnxruntime as ort


def session_options(threads: int | None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    # Calls are short (decoder steps are sub-millisecond): threads spinning between them burn the cores
    # another stage or request needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options
