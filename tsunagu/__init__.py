"""Tsunagu: one estate description of a city's telephony, many derived views."""

__version__ = "0.1.0"
