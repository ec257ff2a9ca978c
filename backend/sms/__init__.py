"""SMS for the loyalty backend: the outbox table, the senders and the worker that drains it.

The core enqueues in its own transaction (`outbox.enqueue`); `SmsWorker` sends later, so a
gateway outage delays SMS but loses none.
"""

from .outbox import counts, create_schema, enqueue
from .senders import FileSender, KavenegarSender, Sender, SendError, make_sender
from .worker import SmsWorker

__all__ = [
    "FileSender",
    "KavenegarSender",
    "SendError",
    "Sender",
    "SmsWorker",
    "counts",
    "create_schema",
    "enqueue",
    "make_sender",
]
