"""celery_dalga.Client on MariaDB, PostgreSQL and SQLite: every call, Python values, and the
same errors as the HTTP interface."""

from datetime import UTC, datetime, timedelta

import pytest
from celery import Celery
from helpers import settings_on, unique_table

from celery_dalga import Client, InvalidParameter, JobNotFound, process
from celery_dalga.client import JobExists
from celery_dalga.config import as_celery_conf
from celery_dalga.process import store_for
from webapi import create_app


@pytest.fixture
def client(any_db_url):
    settings = settings_on(any_db_url, unique_table())
    made = Client(settings)
    made.store.create_table()
    yield made
    process.stop()
    made.store.drop_table()


def test_schedule_takes_python_values(client):
    first = datetime.now(UTC) + timedelta(days=1)
    job = client.schedule("feeds", "1", interval=timedelta(minutes=5), first_run=first)
    assert (job.interval, job.next_sched) == ("300", first)
    assert client.schedule("feeds", "2", interval="PT1H", location="Europe/Istanbul").location
    once = client.schedule("remind", "1", one_off=True, immediate=True)
    assert once.one_off and client.get("remind", "1") == once
    assert client.schedule("cron", "1", cron="*/5 * * * *").cron == "*/5 * * * *"


def test_get_cancel_trigger_pause_resume(client):
    assert client.get("nothing", "here") is None
    client.schedule("feeds", "1", interval=3600)
    assert client.trigger("feeds", "1").triggered_at is not None
    paused = client.pause("feeds", "1")
    assert not paused.enabled
    assert client.resume("feeds", "1").enabled
    assert client.cancel("feeds", "1") is True and client.cancel("feeds", "1") is False
    for call in (client.trigger, client.pause, client.resume):
        with pytest.raises(JobNotFound):
            call("feeds", "1")


def test_list_pages_with_cursors_and_status(client):
    for i in range(5):
        client.schedule("list", str(i), interval=60 + i)
    page = client.list(path="list", sort_by="next-sched", limit=2)
    bodies = [j.body for j in page.jobs]
    while page.cursor:
        page = client.list(cursor=page.cursor)
        bodies += [j.body for j in page.jobs]
    assert bodies == ["0", "1", "2", "3", "4"]
    assert [j.body for j in client.list(reverse=True, limit=2).jobs] == ["4", "3"]
    status = client.status()
    assert status["total_jobs"] == 5 and status["instance_id"] is None


BAD = [
    ({"interval": "abc"}, "interval=abc"),
    ({"interval": -5}, "interval=-5"),
    ({"one_off": True}, "one-off=true"),
    ({"interval": 60, "cron": "* * * * *"}, "interval=60&cron=*+*+*+*+*"),
    ({"interval": 60, "location": "Mars/Base"}, "interval=60&location=Mars/Base"),
    ({"schedule": "R5/soon/PT1S"}, "schedule=R5/soon/PT1S"),
    ({"interval": 60, "exchange": "jobs"}, "interval=60&exchange=jobs"),
]


@pytest.mark.parametrize(("kwargs", "query"), BAD)
def test_the_same_errors_as_http(client, kwargs, query):
    web = create_app(client.settings, client.store).test_client()
    answer = web.put(f"/jobs/a/b?{query}").get_json()
    with pytest.raises(InvalidParameter) as caught:
        client.schedule("a", "b", **kwargs)
    assert (caught.value.parameter, str(caught.value)) == (answer["parameter"], answer["error"])
    with pytest.raises(InvalidParameter, match="path"):
        client.get("", "b")
    assert client.list().jobs == []


def test_a_celery_apps_dalga_keys_choose_the_table(mariadb_url):
    settings = settings_on(mariadb_url, unique_table())
    app = Celery("myapp", set_as_current=False)
    app.conf.update(as_celery_conf(settings))
    client = Client(app=app)
    assert client.store is store_for(settings)
    client.store.create_table()
    try:
        assert client.schedule("from", "celery", interval=60).path == "from"
    finally:
        client.store.drop_table()


REFUSED = [
    ({"interval": 0.5}, {"interval": "0.5"}),
    ({"interval": 60, "retry_interval": 0.25}, {"interval": "60", "retry-interval": "0.25"}),
    ({"parent": "nobody/x"}, {"parent": "nobody/x"}),
    ({"parent": ("a", "b")}, {"parent": "a/b"}),
    ({"interval": 60, "task": "os.system"}, {"interval": "60", "task": "os.system"}),
    ({"interval": 60, "retries": 5000}, {"interval": "60", "retries": "5000"}),
]


@pytest.mark.parametrize(("kwargs", "params"), REFUSED)
def test_every_way_to_schedule_refuses_alike(client, kwargs, params):
    """PUT, the UI's form, Client.schedule and `dalga import` take one path: the same
    refusal, word for word, and nothing written."""
    import io
    import json

    from markupsafe import escape

    from celery_dalga.bulk import BadRecord, import_jobs

    web = create_app(client.settings, client.store).test_client()
    answer = web.put("/jobs/a/b", data=params)
    assert answer.status_code == 400
    expected = answer.get_json()["error"]
    with pytest.raises(InvalidParameter) as caught:
        client.schedule("a", "b", **kwargs)
    assert str(caught.value) == expected
    form = web.post("/ui/jobs/new", data={"path": "a", "body": "b", **params})
    assert form.status_code == 400 and str(escape(expected)) in form.get_data(as_text=True)
    lines = [{"path": "ok", "body": "1", "interval": 60}, {"path": "a", "body": "b", **params}]
    with pytest.raises(BadRecord) as refused:
        import_jobs(client, io.StringIO("\n".join(map(json.dumps, lines))), "jsonl", progress=False)
    assert str(refused.value) == f"line 2: {expected}"
    assert client.get("a", "b") is None


def test_if_absent_leaves_the_job_on_every_way_to_schedule(client):
    import io

    from celery_dalga.bulk import import_jobs

    kept = client.schedule("a", "b", interval=60)
    web = create_app(client.settings, client.store).test_client()
    assert web.put("/jobs/a/b?interval=120&if-absent=true").status_code == 409
    form = {"path": "a", "body": "b", "interval": "120", "if-absent": "on"}
    assert web.post("/ui/jobs/new", data=form).status_code == 400
    with pytest.raises(JobExists):
        client.schedule("a", "b", interval=120, if_absent=True)
    line = '{"path": "a", "body": "b", "interval": 120, "if-absent": true}'
    assert import_jobs(client, io.StringIO(line), "jsonl", progress=False) == 1
    assert client.get("a", "b") == kept


def test_search_parent_children_and_instances(client):
    parent = client.schedule("feeds", "1", interval=60)
    child = client.schedule("mail", "1", parent="feeds/1")
    assert [j.body for j in client.search("fee", None, 10)] == ["1"]
    assert client.search(None, (parent.id,), 10) == [child]
    assert client.parent(child) == parent and client.parent(parent) is None
    assert client.children(parent, 10) == [child] and client.children(child, 10) == []
    assert client.instances() == [] and client.status(7)["instance_id"] == 7
