"""Connectors: single-scale ViT features -> the multi-scale pyramid a pixel decoder reads."""

from zoo.connectors.base import Connector
from zoo.connectors.sam_connector import SamConnector

__all__ = ["Connector", "SamConnector"]
