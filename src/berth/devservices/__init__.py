"""Throwaway instances of the scale-out engines (PostgreSQL, Redis, SeaweedFS S3) on loopback, for tests
and local clusters. Not used by the product."""
