"""Kedro project that trains the ConvNet on MNIST and publishes it for the service."""

__version__ = "0.1.0"
