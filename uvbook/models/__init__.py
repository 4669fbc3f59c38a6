"""Models of the book: one module a family (classifier, and later autoencoder, VAE, GAN)."""

from uvbook.models.classifier import build_cnn_classifier

__all__ = ["build_cnn_classifier"]
