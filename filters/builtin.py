"""Imports every built-in step module so the registry knows them."""

from vlcurate.filters import (  # noqa: F401
    academic,
    caption_size,
    clip_filter,
    emoji_text,
    html_text,
    image_probe,
    image_size,
    language,
    length,
    patterns,
    script,
    unicode_text,
)
