"""Helpers shared by several test modules (plain functions and data; fixtures live in tests/conftest.py).

Test modules import from here, never from each other.
"""
