"""Meshes and measurements: watertight surfaces per organelle, volumes and areas, the scene file."""
