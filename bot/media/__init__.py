"""Attachments → prompt parts: images prepared for a model, text and PDF files as fenced text.

Pure and synchronous (no platform, no network); image work is CPU-bound, so callers
run it in a thread.
"""

from __future__ import annotations

from bot.media.files import (
    MAX_PDF_CONTENT,
    MAX_PDF_PAGES,
    Block,
    Measure,
    fenced,
    file_block,
    language,
    read_pdf,
    read_text_file,
)
from bot.media.images import (
    MAX_BYTES,
    MAX_EDGE,
    MediaType,
    PreparedImage,
    dimensions,
    prepare_image,
)
from bot.media.kinds import (
    ACCEPTED,
    ACCEPTED_FILES,
    ACCEPTED_IMAGES,
    IMAGE_TYPES,
    Kind,
    MediaError,
    binary_refusal,
    classify,
    extension,
    named_image,
    unread_refusal,
)
from bot.types.files import display_name
from bot.types.limits import MAX_PIXELS

__all__ = [
    "ACCEPTED",
    "ACCEPTED_FILES",
    "ACCEPTED_IMAGES",
    "IMAGE_TYPES",
    "MAX_BYTES",
    "MAX_EDGE",
    "MAX_PDF_CONTENT",
    "MAX_PDF_PAGES",
    "MAX_PIXELS",
    "Block",
    "Kind",
    "Measure",
    "MediaError",
    "MediaType",
    "PreparedImage",
    "binary_refusal",
    "classify",
    "dimensions",
    "display_name",
    "extension",
    "fenced",
    "file_block",
    "language",
    "named_image",
    "prepare_image",
    "read_pdf",
    "read_text_file",
    "unread_refusal",
]
