"""job-dispatcher."""

from dispatcher import amqp_decoding

# Before any connection is opened: a property another client can send must never drop one.
amqp_decoding.install()
