"""ONNX Runtime predictors, export and quantisation: serving needs no torch."""
