"""Model registry, preprocessing, ONNX export (torch, export time only) and the ONNX Runtime embedder."""
