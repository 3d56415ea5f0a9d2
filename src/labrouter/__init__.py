"""labrouter: the model router for a home AI lab."""

__version__ = "0.1.0"
