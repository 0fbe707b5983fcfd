"""The worker port: how the control plane drives workers, wherever they run."""
