"""Beat's scheduler: RedBeat (the schedule and a lock in Redis, one active beat per
deployment), made to live through a Redis restart.

A Redis that restarts without its data loses both the lock and the schedule's entries.
RedBeat alone then fails two ways: a standby beat blocked in the lock's acquire exits on
the connection error, and a beat that takes the lock afterwards finds no entries and
schedules nothing, ever (no sweeps, no due campaigns, no reconciler). So the standby asks
for the lock again until Redis answers, and every tick checks that the schedule is still
there and writes it again from the settings when it is not.
"""

import logging
import time

from celery import signals
from redbeat.schedulers import RedBeatScheduler, acquire_distributed_beat_lock, get_redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

# How long a beat waiting for the lock waits before it asks a Redis that was away again.
LOCK_RETRY_SECONDS = 5.0


class RenotifyBeatScheduler(RedBeatScheduler):
    def tick(self, *args, **kwargs):
        if not get_redis(self.app).exists(self.app.redbeat_conf.statics_key):
            logger.warning("beat: the schedule is gone from Redis (a restart?); writing it again")
            self.setup_schedule()
        return super().tick(*args, **kwargs)


# RedBeat's own receiver blocks in the lock's acquire and raises out of it when Redis goes
# away; this one asks again until Redis answers.
signals.beat_init.disconnect(acquire_distributed_beat_lock)


@signals.beat_init.connect
def beat_lock_acquire_through_restarts(sender=None, **kwargs) -> None:
    while True:
        try:
            acquire_distributed_beat_lock(sender=sender, **kwargs)
            return
        except (RedisConnectionError, RedisTimeoutError) as error:
            logger.warning(
                "beat: Redis unreachable while waiting for the lock (%s); asking again in %s s",
                type(error).__name__,
                LOCK_RETRY_SECONDS,
            )
            time.sleep(LOCK_RETRY_SECONDS)
