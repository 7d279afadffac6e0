"""Architecture tables shared by `flaxnets` (Flax) and `torchref` (PyTorch).

Each family's frozen dataclass config and named variant table lives here, in pure Python (and
numpy where a design rule needs torch's float32 arithmetic), so both implementations read the
same numbers without importing each other's framework: importing `netspecs` imports neither
jax, flax nor torch.
"""
