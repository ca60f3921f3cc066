"""Four daemons on one PostgreSQL catalog and one bucket: concurrent lifecycle changes stay correct,
and each daemon's events reach the others' subscribers."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from regd.client import Client
from regd.errors import RegdError
from tests.modelfiles import write_safetensors

CONTRACT = {-32002, -32003, -32005}
"""What a promotion race may answer: conflict, guard failed, invalid transition."""
RACE_S = 5.0


def _weights(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    return write_safetensors(path, {"w": rng.standard_normal((4, 4)).astype(np.float32)})


def _team(daemon_factory, pg_url: str, bucket: str, n: int):  # type: ignore[no-untyped-def]
    config = f'catalog = "{pg_url}"\nobjects = "s3://{bucket}/team"\n'
    return [daemon_factory(config) for _ in range(n)]


def test_four_daemons_promoting_and_rolling_back_one_model(daemon_factory, pg_url, bucket, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    daemons = _team(daemon_factory, pg_url, bucket, 4)
    first = daemons[0].client()
    versions = [first.register(_weights(tmp_path / f"m{i}.safetensors", i), name="fraud").version for i in range(8)]
    first.call("versions.promote", {"name": "fraud", "version": versions[0], "stage": "production", "reason": "go"})

    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    unexpected: list[str] = []
    productions: list[int] = []
    lock = threading.Lock()

    def worker(sock: Path, seed: int) -> None:
        rnd = random.Random(seed)
        with Client(sock, timeout=60) as c:
            while not stop.is_set():
                version = rnd.choice(versions)
                try:
                    if rnd.random() < 0.3:
                        c.call("models.rollback", {"name": "fraud", "reason": f"worker {seed}"})
                        what = "rollback"
                    else:
                        stage = rnd.choice(["staging", "production", "production"])
                        c.call("versions.promote", {"name": "fraud", "version": version, "stage": stage,
                                                    "reason": f"worker {seed}"})  # fmt: skip
                        what = f"promote {stage}"
                except RegdError as exc:
                    if exc.code not in CONTRACT:
                        with lock:
                            unexpected.append(f"{exc.code}: {exc.message}")
                    what = f"refused {exc.code}"
                with lock:
                    outcomes[what] += 1

    def reader() -> None:
        # the database's own view, read as often as it will answer, beside the daemons' answers
        with psycopg.connect(pg_url, autocommit=True) as db, Client(daemons[3].socket, timeout=60) as c:
            while not stop.is_set():
                (count,) = db.execute("SELECT count(*) FROM versions WHERE stage = 'production'").fetchone()
                items = c.call("versions.list", {"name": "fraud", "stage": "production"})["items"]
                with lock:
                    productions.extend([count, len(items)])

    threads = [threading.Thread(target=worker, args=(d.socket, i * 10 + j)) for i, d in enumerate(daemons) for j in range(2)]
    threads.append(threading.Thread(target=reader))
    for t in threads:
        t.start()
    time.sleep(RACE_S)
    stop.set()
    for t in threads:
        t.join(60)

    assert not unexpected, unexpected[:5]
    assert sum(n for what, n in outcomes.items() if not what.startswith("refused")) > 20, outcomes
    assert outcomes["rollback"] > 0, outcomes
    assert productions and set(productions) == {1}, Counter(productions)
    for d in daemons:
        verified = d.client().call("audit.verify")
        assert verified["ok"], verified
    # every daemon agrees on the one production version, and the stage history explains it
    answers = {d.client().model("fraud").production for d in daemons}
    assert len(answers) == 1 and None not in answers
    history = first.call("models.history", {"name": "fraud"})
    assert history


def _subscribed_until(d, model: str) -> tuple[list, threading.Thread]:  # type: ignore[no-untyped-def]
    """A subscriber to ``d``'s version events, on a thread, until one registers ``model``: (seen, thread)."""
    seen: list = []
    subscribed = threading.Event()

    def listen() -> None:
        with Client(d.socket, timeout=30) as c:
            stream = c.events(["version"])
            subscribed.set()
            for event in stream:
                seen.append(event)
                if event.topic == "version.registered" and event.model == model:
                    return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert subscribed.wait(30)
    return seen, t


def test_a_registration_on_one_daemon_is_an_event_on_another(daemon_factory, pg_url, bucket, tmp_path) -> None:  # type: ignore[no-untyped-def]
    a, b = _team(daemon_factory, pg_url, bucket, 2)
    seen, t = _subscribed_until(b, "churn")
    started = time.monotonic()
    v = a.client().register(_weights(tmp_path / "c.safetensors", 7), name="churn")
    t.join(30)
    assert not t.is_alive(), "daemon B never told its subscriber about A's registration"
    event = seen[-1]
    assert (event.topic, event.model, event.version) == ("version.registered", "churn", v.version)  # type: ignore[attr-defined]
    assert time.monotonic() - started < 5  # live (a notification), not the 5 s poll
    # B's own changes are told once, not again when its notification comes back
    with Client(b.socket, timeout=30) as c:
        stream = c.events(["alias"])
        b.client().call("aliases.set", {"name": "churn", "alias": "champion", "version": v.version})
        first = next(stream)
        a.client().call("aliases.set", {"name": "churn", "alias": "challenger", "version": v.version})
        second = next(stream)
    assert (first.data["action"], second.data["action"]) == ("alias.set", "alias.set")
    assert (first.data["audit_id"], second.data["audit_id"]) == (first.data["audit_id"], first.data["audit_id"] + 1)


def test_a_subscriber_gets_its_daemons_own_changes_and_the_others_each_once(daemon_factory, pg_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A's follower reads every row of the chain and must tell A's own (already told, before the
    commit) from B's by the transaction that wrote them: none twice, none lost."""
    config = f'catalog = "{pg_url}"\n'
    a, b = daemon_factory(config, sub="a"), daemon_factory(config, sub="b")
    seen, t = _subscribed_until(a, "end")
    made: list[tuple[str, str]] = []

    def register(d, name: str, seed: int) -> None:  # type: ignore[no-untyped-def]
        c = d.client()  # both at once: A's follower reads rows of both daemons in one go
        for i in range(10):
            made.append((name, c.register(_weights(tmp_path / f"{name}{i}.safetensors", seed + i), name=name).version))

    writers = [threading.Thread(target=register, args=(a, "own", 500)), threading.Thread(target=register, args=(b, "theirs", 600))]
    for w in writers:
        w.start()
    for w in writers:
        w.join(60)
    made.append(("end", b.client().register(_weights(tmp_path / "end.safetensors", 700), name="end").version))
    t.join(30)
    assert not t.is_alive(), "A never told its subscriber about B's last registration"
    got = [(e.model, e.version) for e in seen if e.topic == "version.registered"]
    assert sorted(got) == sorted(made), Counter(got)


def test_a_daemon_nobody_subscribes_to_passes_over_others_changes_and_then_follows_live(daemon_factory, pg_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Without a subscriber or a deploy_dir, a daemon reads none of the others' rows (each would
    otherwise read every change of the team); a subscriber arriving later gets what comes after,
    live, and nothing of what came before."""
    config = f'catalog = "{pg_url}"\n'
    a, b = daemon_factory(config, sub="a"), daemon_factory(config, sub="b")
    ca = a.client()
    for i in range(20):
        ca.register(_weights(tmp_path / f"m{i}.safetensors", 100 + i), name="quiet")
    time.sleep(0.5)  # the notifications reach B, which has nobody to tell
    seen, t = _subscribed_until(b, "loud")
    time.sleep(0.2)
    started = time.monotonic()
    v = ca.register(_weights(tmp_path / "loud.safetensors", 999), name="loud")
    t.join(30)
    assert not t.is_alive(), "B never told its new subscriber about A's registration"
    assert time.monotonic() - started < 5  # live (a notification), not the 5 s poll
    assert [(e.topic, e.model, e.version) for e in seen] == [("version.registered", "loud", v.version)]


def test_subscribers_coming_and_going_each_get_exactly_what_follows_them(daemon_factory, pg_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """B listens for other daemons' changes only while it has a subscriber: each new subscriber gets
    the changes made after it subscribed, live, and none of those made while nobody listened."""
    config = f'catalog = "{pg_url}"\n'
    a, b = daemon_factory(config, sub="a"), daemon_factory(config, sub="b")
    ca = a.client()
    for round_ in range(3):
        for i in range(5):  # made while B has nobody to tell
            ca.register(_weights(tmp_path / f"q{round_}-{i}.safetensors", 1000 * round_ + i), name="quiet")
        seen, t = _subscribed_until(b, f"loud{round_}")
        v = ca.register(_weights(tmp_path / f"l{round_}.safetensors", 999 + round_), name=f"loud{round_}")
        t.join(30)
        assert not t.is_alive(), f"round {round_}: B never told its subscriber about A's registration"
        assert [(e.topic, e.model, e.version) for e in seen] == [("version.registered", f"loud{round_}", v.version)]
        deadline = time.monotonic() + 10  # the subscriber's connection is closed: B forgets it
        while b.client().status()["subscribers"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b.client().status()["subscribers"] == 0


def test_a_follower_that_lost_its_connection_catches_up_on_what_it_missed(daemon_factory, pg_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    config = f'catalog = "{pg_url}"\n'
    a, b = daemon_factory(config, sub="a"), daemon_factory(config, sub="b")
    seen, t = _subscribed_until(b, "missed")
    db_name = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND application_name = 'regd'",
                      (db_name,))  # fmt: skip
    time.sleep(0.1)  # B's follower is now waiting to reconnect; A commits meanwhile
    v = a.client().register(_weights(tmp_path / "missed.safetensors", 4242), name="missed")
    t.join(30)
    assert not t.is_alive(), "B's follower did not deliver the change made while it reconnected"
    assert [(e.topic, e.model, e.version) for e in seen] == [("version.registered", "missed", v.version)]
