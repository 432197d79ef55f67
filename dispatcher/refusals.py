"""What a broker refusal means, in one sentence for a person: aiormq reports it as frame internals."""

from __future__ import annotations

VHOST_REFUSED = (
    "the broker refused the vhost of DISPATCHER_AMQP_URL: it does not exist or this user "
    "has no permission on it (rabbitmqctl list_vhosts; the vhost is the URL's path, '/' as %2F)"
)


def broker_refusal(exc: BaseException) -> str | None:
    """One sentence for a broker that closes the connection at Connection.Open; else None.

    RabbitMQ does that (530 NOT_ALLOWED) only when the vhost does not exist or the user may not
    use it; aiormq reports it as an unexpected `Connection.Close` frame.
    """
    text = str(exc)
    if "Connection.OpenOk" in text and "Connection.Close" in text:
        return VHOST_REFUSED
    return None
