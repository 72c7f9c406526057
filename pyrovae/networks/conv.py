"""A small convolutional encoder and decoder for images stored as flat vectors."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..errors import ConfigError
from .mlp import GaussianHead, activation


def _check_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(image_shape) != 3 or image_shape[1] % 4 or image_shape[2] % 4:
        raise ConfigError(
            f"the conv nets need an image shape (C, H, W) with H and W divisible by 4, got {tuple(image_shape)}"
        )
    c, h, w = image_shape
    return int(c), int(h), int(w)


class ConvEncoder(nn.Module):
    """x ``[B, C*H*W]`` -> (mu, sigma): two stride-2 convolutions, then a dense layer; ``input_scale``
    multiplies x first (1/255 for 8-bit levels)."""

    def __init__(
        self,
        image_shape: Sequence[int],
        z_dim: int,
        channels: Sequence[int] = (32, 64),
        hidden: int = 256,
        act: str = "relu",
        input_scale: float = 1.0,
    ):
        super().__init__()
        self.input_scale = float(input_scale)
        self.image_shape = _check_shape(image_shape)
        c, h, w = self.image_shape
        c1, c2 = channels
        self.net = nn.Sequential(
            nn.Conv2d(c, c1, 4, stride=2, padding=1),  # [B, c1, H/2, W/2]
            activation(act),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1),  # [B, c2, H/4, W/4]
            activation(act),
            nn.Flatten(),
            nn.Linear(c2 * (h // 4) * (w // 4), hidden),
            activation(act),
        )
        self.head = GaussianHead(hidden, z_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x * self.input_scale if self.input_scale != 1.0 else x
        return self.head(self.net(x.reshape(-1, *self.image_shape)))


class ConvDecoder(nn.Module):
    """z ``[..., z_dim]`` -> ``[..., P*C*H*W]``, P blocks of likelihood parameters, block-major."""

    def __init__(
        self,
        image_shape: Sequence[int],
        z_dim: int,
        num_params: int = 1,
        channels: Sequence[int] = (64, 32),
        hidden: int = 256,
        act: str = "relu",
    ):
        super().__init__()
        self.image_shape = _check_shape(image_shape)
        c, h, w = self.image_shape
        c1, c2 = channels
        self.num_params = num_params
        self.start = (c1, h // 4, w // 4)
        self.dense = nn.Sequential(
            nn.Linear(z_dim, hidden), activation(act), nn.Linear(hidden, c1 * (h // 4) * (w // 4)), activation(act)
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(c1, c2, 4, stride=2, padding=1),  # [N, c2, H/2, W/2]
            activation(act),
            nn.ConvTranspose2d(c2, num_params * c, 4, stride=2, padding=1),  # [N, P*C, H, W]
        )

    def forward(self, z: Tensor) -> Tensor:
        lead = z.shape[:-1]  # [K, B] under a particle plate, [B] otherwise
        h = self.dense(z.reshape(-1, z.shape[-1])).reshape(-1, *self.start)
        out = self.deconv(h)  # [N, P*C, H, W]; channel p*C + c is block p, so flat is block-major
        return out.reshape(*lead, -1)
