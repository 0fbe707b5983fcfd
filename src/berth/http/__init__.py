"""The HTTP side of the server: blob upload/download URLs and the health check."""
