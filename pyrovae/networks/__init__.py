"""Encoders (x -> (mu, sigma)) and decoders (z -> likelihood parameters)."""

from . import architecture
from .architecture import Architecture, Shapes
from .conv import ConvDecoder, ConvEncoder
from .mlp import ACTIVATIONS, GaussianHead, MLPDecoder, MLPEncoder

__all__ = [
    "ACTIVATIONS",
    "Architecture",
    "ConvDecoder",
    "ConvEncoder",
    "GaussianHead",
    "MLPDecoder",
    "MLPEncoder",
    "Shapes",
    "architecture",
]
