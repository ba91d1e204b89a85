"""The feeder: OKX sockets, frame parsing, book state, batching and publishing.

This package knows OKX and Celery's wire contract, never MongoDB or the workers' code.
"""
