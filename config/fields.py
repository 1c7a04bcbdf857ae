"""A column's length read from the model field itself, text cut to it, and text freed of
control characters."""

import functools

from django.db import models


# Cached: a model's fields do not change while the process runs, and the webhook asks for
# seven lengths per event it stores.
@functools.cache
def column_length(model: type[models.Model], field_name: str) -> int:
    """The most characters ``model.field_name``'s column holds (its ``max_length``)."""
    field = model._meta.get_field(field_name)
    if not isinstance(field, models.Field) or field.max_length is None:
        raise TypeError(f"{model.__name__}.{field_name} is not a column with a max_length")
    return field.max_length


def clipped(model: type[models.Model], field_name: str, text: str) -> str:
    """``text`` cut to ``model.field_name``'s ``max_length`` (the column would refuse more)."""
    return text[: column_length(model, field_name)]


# Control characters (C0 but tab and line breaks, DEL, C1) are dropped from what a member
# or their browser sends: PostgreSQL refuses NUL in text, and a stray byte in a comment
# must never cost the member the choice it came with.
_CONTROLS = dict.fromkeys(
    (c for c in [*range(0x20), *range(0x7F, 0xA0)] if chr(c) not in "\t\n\r"), None
)


def text_printable(text: str) -> str:
    """``text`` without control characters other than tab and line breaks."""
    return text.translate(_CONTROLS)
