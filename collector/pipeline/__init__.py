"""The feeder's pure data path: raw frame -> parse -> dedupe -> order book -> records for the
outbox, plus the bookkeeping that finds gaps. One job per module:

    flow.py       Pipeline: feed() takes one frame through every step, in order; the public
                  interface the driver, health, bench and tests use
    ownership.py  which connection's data is used for each (channel, instId); trade dedupe;
                  the (time, id) mark of a record
    tracking.py   watermarks, first records, open windows (reconnect, stale, broken book) and
                  the Gap values they become; startup gaps against the previous run
    resync.py     REST resync jobs for broken books: when to fetch, what a reply does
    loglimit.py   rate-limited logging of bad frames
"""

from collector.pipeline.flow import Pipeline, Sink
from collector.pipeline.loglimit import LogLimiter, error_category
from collector.pipeline.ownership import data_key, record_mark
from collector.pipeline.tracking import startup_gaps

__all__ = [
    "LogLimiter",
    "Pipeline",
    "Sink",
    "data_key",
    "error_category",
    "record_mark",
    "startup_gaps",
]
