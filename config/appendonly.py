"""Tables of evidence that only ever grow: the consent ledger, its checks, the
suppression feed, the staff audit trail.

The model and its querysets refuse to change or delete rows; each table's migration
adds database triggers that refuse raw SQL, other clients and bulk operations too."""

from django.db import models


def _refusal(model: type[models.Model], verb: str) -> str:
    what = getattr(model, "append_only_name", "The consent ledger")
    return f"{what} is append-only: {model._meta.verbose_name_plural} cannot be {verb}."


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError(_refusal(self.model, "updated"))

    def delete(self):
        raise TypeError(_refusal(self.model, "deleted"))


class AppendOnlyModel(models.Model):
    """Rows are added, never changed or deleted. ``append_only_name`` names the record
    in the refusal ("The consent ledger", "The staff audit trail")."""

    append_only_name = "The consent ledger"
    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise TypeError(_refusal(type(self), "changed"))
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError(_refusal(type(self), "deleted"))
