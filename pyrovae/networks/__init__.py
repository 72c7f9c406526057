"""Encoders (x -> (mu, sigma)) and decoders (z -> likelihood parameters)."""

from .conv import ConvDecoder, ConvEncoder
from .mlp import ACTIVATIONS, GaussianHead, MLPDecoder, MLPEncoder

__all__ = ["ACTIVATIONS", "ConvDecoder", "ConvEncoder", "GaussianHead", "MLPDecoder", "MLPEncoder"]
