"""celery-dalga's standalone Celery app with kombu's Redis ack emulation turned off, for
`bench/e2e.py --no-ack-emulation`. Without it a message a worker has taken is gone from
Redis; if the worker dies before the callback, the run's lease brings it back."""

from celery_dalga.celery import app

app.conf.broker_transport_options = {"ack_emulation": False}
