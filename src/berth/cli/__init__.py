"""The berth command line: up, env, status."""
