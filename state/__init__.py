"""The domain: value types, messages, state machines, pure rules and persistence.

Imports only the standard library (and peewee, in ``store.py`` alone).
"""
