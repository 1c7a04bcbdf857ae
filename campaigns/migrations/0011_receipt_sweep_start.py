"""Start the receipt sweep at the ledger's current head on a database with history.

The sweep owes a receipt for every page objection after ``ReceiptSweep.last_seq``, and
its row used to be created on the first sweep at 0: deploying receipts on a database
with history emailed every past objector. The row is now created here: at the head on
a database that already has ledger events (those objections were confirmed on the page
before receipts existed), at 0 on a fresh one. A row that exists (the sweep already
ran) is left as it is.
"""

from django.db import migrations
from django.db.models import Max


def receipt_sweep_start(apps, schema_editor):
    ReceiptSweep = apps.get_model("campaigns", "ReceiptSweep")
    ConsentEvent = apps.get_model("accounts", "ConsentEvent")
    if ReceiptSweep.objects.exists():
        return
    head = ConsentEvent.objects.aggregate(head=Max("seq"))["head"] or 0
    ReceiptSweep.objects.create(pk=1, last_seq=head)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0009_member_unsubscribed_at"),
        ("campaigns", "0010_receipt_withheld"),
    ]

    operations = [migrations.RunPython(receipt_sweep_start, migrations.RunPython.noop)]
