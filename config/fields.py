"""Text cut to what a model's column holds, its length read from the field itself."""

from django.db import models


def clipped(model: type[models.Model], field_name: str, text: str) -> str:
    """``text`` cut to ``model.field_name``'s ``max_length`` (the column would refuse more)."""
    return text[: model._meta.get_field(field_name).max_length]
