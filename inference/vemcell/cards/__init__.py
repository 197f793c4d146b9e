"""Model cards: the JSON beside each ONNX model (classes, colours, voxel size, normalisation)."""
