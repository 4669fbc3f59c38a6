"""uvbook: the companion package of *Unsupervised Learning for Image Recognition*.

One concept a module; the chapters import from here rather than copying code:

* :mod:`uvbook.modes`    quick vs full mode, seeding, devices (Preface)
* :mod:`uvbook.data`     datasets with verified content, subsets, ``tf.data`` (Chapter 1)
* :mod:`uvbook.evaluate` clustering ACC/NMI, few-label linear probe, k-NN (Chapter 2)
* :mod:`uvbook.plots`    image grids, loss curves, scatters (all chapters)
* :mod:`uvbook.models`   the chapters' models (Chapter 2 onwards)

TensorFlow is imported only by the modules that need it, so ``import uvbook`` is fast.
"""

import os as _os

# Keep TensorFlow's C++ start-up chatter out of the notebooks (a reader may override it).
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
