"""Image files in and out, with one clear error line naming a file that cannot be read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def read_image(path: str | Path) -> Tensor:
    """An image file as float [3, H, W] in [0, 1]; greyscale, palette and alpha images become RGB."""
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise ValueError(f"Cannot read image '{path}': no such file") from None
    except (OSError, ValueError, SyntaxError) as error:  # PIL reports corrupt files through all three
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"Cannot read image '{path}': {reason}") from error
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Save a uint8 [H, W, 3] (or [H, W]) array as PNG, creating parent folders: synthetic data on disk."""
    if image.dtype != np.uint8:
        raise ValueError(f"write_png expects a uint8 array, got {image.dtype}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="PNG")
