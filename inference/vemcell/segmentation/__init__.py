"""Segmentation: organelle labels from the ONNX U-Net in 1-3 directions, fused and cleaned."""
