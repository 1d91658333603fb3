"""Serving: the decision rule, ONNX metadata, the Predictor and streaming prediction (numpy + onnxruntime only).

Nothing is re-exported here, so importing one module never pulls in the others' dependencies.
"""
