"""Running calls at the same moment, each on its own database connection."""

import threading

from django.db import connections


def at_once(*calls) -> list[Exception]:
    """Run the calls in threads released together; the errors they raised."""
    start, errors = threading.Barrier(len(calls)), []

    def run(call):
        try:
            start.wait()
            call()
        except Exception as exc:  # collected for the caller's assertion
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors
