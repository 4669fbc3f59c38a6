"""Models of the book, one module a family: classifier (Chapter 2), autoencoder (3), gan (4),
vae (5), contrastive and scan (6), semisup and semigen (7), diffusion and masked (8)."""

from uvbook.models.classifier import build_cnn_classifier

__all__ = ["build_cnn_classifier"]
