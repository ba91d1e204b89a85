"""Helpers for running the system offline on one machine: a throwaway redis-server, the demo."""
