"""gunicorn's settings: ``gunicorn -c config/gunicorn.py config.wsgi`` (command-line
options such as ``--workers`` and ``--bind`` still apply on top).

Its access log (on standard output here) and error log go through ``RedactingLogger``,
which takes member links out of every line: a request line, a referer or an error
message with ``/n/<token>/`` would otherwise hand the member's link to the log's readers.
"""

from gunicorn.glogging import Logger

from config.logredact import MemberLinkFilter

accesslog = "-"
# gunicorn's default line without the client's address (logs never carry one) and with
# the time taken.
access_log_format = '%(t)s "%(r)s" %(s)s %(b)s %(M)sms "%(f)s" "%(a)s"'
logger_class = "config.gunicorn.RedactingLogger"


class RedactingLogger(Logger):
    """gunicorn's logger with member links redacted from access and error lines."""

    def setup(self, cfg) -> None:
        super().setup(cfg)  # also run on a config reload: add the filter only once
        for log in (self.error_log, self.access_log):
            if not any(isinstance(f, MemberLinkFilter) for f in log.filters):
                log.addFilter(MemberLinkFilter())
