"""Real backing services (S3, ...) started on loopback for tests and a local development cluster."""
