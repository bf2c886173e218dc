"""SpatialAlign: align text-to-video models with dynamic spatial relationships."""

__version__ = "0.1.0"
