"""zoo: segmentation multimodal models (PSALM, X-SAM, SEEM, ...) as recipes over one set of swappable parts.

Importing the package registers every component, so short class names in recipes always resolve.
"""

import os

# Nothing downloads at run time: weights and tokenizers come from local files only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from zoo import bridges, connectors, data, decoders, encoders, heads, language, losses, projectors  # noqa: E402,F401
from zoo.registry import components, register  # noqa: E402

__version__ = "0.1.0"
__all__ = ["components", "register"]
