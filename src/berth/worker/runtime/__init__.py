"""Container runtimes behind one small interface."""

from berth.worker.runtime.base import Container, Runtime

__all__ = ["Container", "Runtime"]
