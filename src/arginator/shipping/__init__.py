"""Shipping: ONNX export with metadata and a parity check, and compression variants with a ship policy."""
