"""The worker: starts and stops task containers on one machine and streams their output."""
