"""Inception-v3's mixed blocks: Szegedy et al., "Rethinking the Inception Architecture for
Computer Vision", CVPR 2016, Table 1.
"""
from __future__ import annotations


MIXED: tuple[tuple[str, str, dict], ...] = (
    ("Mixed_5b", "A", {"pool_features": 32}),
    ("Mixed_5c", "A", {"pool_features": 64}),
    ("Mixed_5d", "A", {"pool_features": 64}),
    ("Mixed_6a", "B", {}),
    ("Mixed_6b", "C", {"channels_7x7": 128}),
    ("Mixed_6c", "C", {"channels_7x7": 160}),
    ("Mixed_6d", "C", {"channels_7x7": 160}),
    ("Mixed_6e", "C", {"channels_7x7": 192}),
    ("Mixed_7a", "D", {}),
    ("Mixed_7b", "E", {}),
    ("Mixed_7c", "E", {}),
)
