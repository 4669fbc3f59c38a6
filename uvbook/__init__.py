"""uvbook: the companion package of *Unsupervised Learning for Image Recognition*.

One concept a module; the chapters import from here rather than copying code. From the
bottom up (a module imports only modules above it in this list, never below):

* :mod:`uvbook.modes`, :mod:`uvbook.validate`, :mod:`uvbook._io`: quick vs full mode and
  seeding; argument checks; atomic writes and file hashes
* :mod:`uvbook.data`, :mod:`uvbook.layers`, :mod:`uvbook.plots`: datasets with verified
  content; layers and network builders; image grids, curves, scatters
* :mod:`uvbook.models`: one ``keras.Model`` subclass per idea (autoencoders, GANs, VAEs,
  SimCLR, FixMatch, the semi-supervised GAN, M2, the diffusion model, the masked
  autoencoder) and the CNN classifier
* :mod:`uvbook.evaluate`: the metrics and the evaluation protocol every chapter shares
* :mod:`uvbook.callbacks`, :mod:`uvbook.train`: resume, guards and monitors; train-or-load
* :mod:`uvbook.recipes`: every model the book trains, from one config each
* :mod:`uvbook.represent`, :mod:`uvbook.results`, :mod:`uvbook.explorer`: Chapter 6's
  representations; the results record; Chapter 5's latent explorer for the web page

``tests/unit/test_package_layout.py`` checks this order. TensorFlow is imported only by
the modules that need it, so ``import uvbook`` is fast.
"""

import os as _os

# Keep TensorFlow's C++ start-up chatter out of the notebooks (a reader may override it).
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
