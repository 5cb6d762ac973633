"""Imports every built-in step module so the registry knows them."""

from vlcurate.filters import image_probe, unicode_text  # noqa: F401
