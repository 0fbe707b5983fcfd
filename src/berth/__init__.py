"""Berth: a self-hosted serverless platform that speaks the Modal client's protocol."""

__version__ = "0.1.0"
