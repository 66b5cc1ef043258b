"""A Celery app for django-celery-beat's DatabaseScheduler on MariaDB, from BENCH_* variables."""

import os

import django
from celery import Celery
from django.conf import settings

settings.configure(
    INSTALLED_APPS=["django_celery_beat"],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": os.environ["BENCH_DJANGO_DB"],
            "USER": "root",
            "HOST": "127.0.0.1",
            "PORT": 3306,
        }
    },
    USE_TZ=True,
    TIME_ZONE="UTC",
)
django.setup()

app = Celery("django_bench", broker=os.environ["BENCH_BROKER"])
app.conf.update(
    beat_max_loop_interval=1, task_default_queue=os.environ["BENCH_QUEUE"], timezone="UTC"
)


def load(jobs: int, progress) -> None:
    """Fresh tables; `jobs` hourly PeriodicTasks last run two hours ago: all due now."""
    from datetime import UTC, datetime, timedelta

    from django.core.management import call_command
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    call_command("migrate", "django_celery_beat", verbosity=0)
    PeriodicTask.objects.all().delete()
    hourly, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.HOURS)
    last = datetime.now(UTC) - timedelta(hours=2)
    queue = os.environ["BENCH_QUEUE"]
    for start in range(0, jobs, 5000):
        batch = [
            PeriodicTask(
                name=f"job{i}",
                task="bench.noop",
                interval=hourly,
                args=f"[{i}]",
                last_run_at=last,
                queue=queue,
            )
            for i in range(start, min(jobs, start + 5000))
        ]
        PeriodicTask.objects.bulk_create(batch)
        progress(len(batch))
