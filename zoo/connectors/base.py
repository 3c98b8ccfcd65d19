"""The connector slot's contract: single-scale encoder maps in, the pyramid a pixel decoder reads out."""

from __future__ import annotations

from torch import nn

from zoo.types import FeatureSpecs


class Connector(nn.Module):
    """Base of connectors: encoder maps -> the pyramid the pixel decoder reads, declared in `output_specs`."""

    output_specs: FeatureSpecs
