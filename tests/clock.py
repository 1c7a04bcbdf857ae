"""A fresh rate-limit window for tests that count hits.

The limits count in fixed windows (config.ratelimit): a test that makes four hits on
a "3/m" limit sees the fourth allowed when a minute boundary falls between them.
Starting the test just after an hour boundary (and letting the clock run) leaves
every "/m" and "/h" window of the test a whole period to fill.
"""

import contextlib
import time

import time_machine

HOUR = 3600


@contextlib.contextmanager
def at_the_start_of_a_rate_window():
    next_hour = (int(time.time()) // HOUR + 1) * HOUR
    with time_machine.travel(next_hour + 1, tick=True):
        yield
