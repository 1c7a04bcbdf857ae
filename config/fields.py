"""A column's length read from the model field itself, and text cut to it."""

from django.db import models


def column_length(model: type[models.Model], field_name: str) -> int:
    """The most characters ``model.field_name``'s column holds (its ``max_length``)."""
    field = model._meta.get_field(field_name)
    if not isinstance(field, models.Field) or field.max_length is None:
        raise TypeError(f"{model.__name__}.{field_name} is not a column with a max_length")
    return field.max_length


def clipped(model: type[models.Model], field_name: str, text: str) -> str:
    """``text`` cut to ``model.field_name``'s ``max_length`` (the column would refuse more)."""
    return text[: column_length(model, field_name)]
