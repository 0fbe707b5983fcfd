"""The S3-compatible blob store: blob bodies and mount files in one bucket, for many hosts."""
