"""Throwaway instances of the scale-out engines (Redis, ...) on loopback, for tests and local clusters.
Not used by the product."""
