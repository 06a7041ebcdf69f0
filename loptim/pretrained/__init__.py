"""Shipped weights (*.safetensors) of the learned optimizers, each with a JSON card."""
