"""Connectors: single-scale ViT features -> the multi-scale pyramid a pixel decoder reads."""

from zoo.connectors.sam_connector import SamConnector

__all__ = ["SamConnector"]
