"""The video autoencoder: a frozen image VAE whose decoder gains temporal layers, and its training losses."""

from videoldm.autoencoder.discriminator import VideoDiscriminator
from videoldm.autoencoder.losses import DecoderLoss
from videoldm.autoencoder.lpips import LPIPS
from videoldm.autoencoder.temporal_decoder import TemporalDecoderAdapter
from videoldm.autoencoder.video_autoencoder import VideoAutoencoder, load_video_autoencoder

__all__ = [
    "LPIPS",
    "DecoderLoss",
    "TemporalDecoderAdapter",
    "VideoAutoencoder",
    "VideoDiscriminator",
    "load_video_autoencoder",
]
