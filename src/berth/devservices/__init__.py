"""Throwaway local instances of the engines a scaled-out Berth runs on, for tests and a local cluster."""
