"""Venues behind the order port (adapters/ports.py): the paper exchange, and the market rules a venue publishes."""
