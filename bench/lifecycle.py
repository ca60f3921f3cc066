"""``python -m bench lifecycle``: governed promotion (issue 5) beside MLflow, and a promotion race.

* Promotion to production of a fresh version, one after another: guards (``min``, ``max``,
  ``max_regression``, ``require``) evaluated, the previous production version archived, stage
  history and audit rows written in one transaction, and the ``<deploy_dir>/<model>/production``
  pointer swapped. Timed to the reply and to the moment the pointer is seen moved, interleaved with
  MLflow's ``set_registered_model_alias`` (the closest thing MLflow has) and with the floor of such
  a change (one SQLite commit plus an atomic symlink swap with a directory fsync).
* 50 clients promoting and rolling back one model at once for a bounded time, and a reader polling
  in a loop: only contract error codes, and never zero or two production versions.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench import mlflow_peer
from bench.common import Section, daemon, median, ms
from bench.fixtures import (
    Conn,
    Row,
    RpcError,
    dist,
    faster,
    fsync_dir,
    interleave,
    load_note,
    loadavg,
    rpc,
    small_model,
    table,
    times,
    within,
)
from bench.mlflow_peer import MlflowPeer

CONTRACT = {-32002, -32003, -32005}
"""The error codes a promotion race may answer: conflict, guard failed, invalid transition."""


@dataclass
class Plan:
    promotions: int = 200
    clients: int = 50
    race_s: float = 30
    race_versions: int = 400


FULL = Plan()
QUICK = Plan(promotions=40, race_s=5, race_versions=100)


def _config(deploy: Path) -> str:
    return f"""deploy_dir = "{deploy}"

[policy."fraud*".production]
min = {{ accuracy = 0.8 }}
max = {{ latency_ms = 50 }}
max_regression = {{ accuracy = 0.02 }}
lower_is_better = ["latency_ms"]
require = ["signature", "safe_format"]
"""


def run(quick: bool) -> Section:
    plan = QUICK if quick else FULL
    missing = mlflow_peer.available()
    if missing:
        raise RuntimeError(f"the MLflow peer cannot run: {missing}")
    work = Path(tempfile.mkdtemp(prefix="regd-bench-lifecycle-"))
    figures: dict[str, float] = {}
    load0 = loadavg()
    try:
        deploy = work / "deploy"
        deploy.mkdir()
        with daemon(_config(deploy)) as d:
            print("bench lifecycle: promotions one by one", file=sys.stderr)
            part1 = _promotions(d.socket, plan, work, deploy, figures)
            print(f"bench lifecycle: {plan.clients} clients racing", file=sys.stderr)
            part2 = _race(d.socket, plan, work, deploy, figures)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    body = "\n\n".join(
        [
            "The daemon runs with `deploy_dir` set and this policy (every promotion below is checked against it):",
            "```toml\n" + _config(Path("<deploy_dir>")).split("\n", 2)[2].strip() + "\n```",
            part1,
            part2,
            "Reproduce: `pip install -e '.[bench]' && python -m bench lifecycle` (`--quick` for a smoke run).",
            load_note(load0),
        ]
    )
    return Section("lifecycle", "Lifecycle: governed promotion vs MLflow, and a promotion race", body, figures)


# ----------------------------------------------------------------------------- one by one


class PromotionFloor:
    """The least a durable stage change with a deploy pointer can do: one commit, one symlink swap."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        (directory / "deploy").mkdir(parents=True)
        self.db = sqlite3.connect(directory / "floor.db", isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = FULL")
        self.db.execute("CREATE TABLE stages (version INTEGER PRIMARY KEY, stage TEXT)")
        self.db.execute("CREATE TABLE audit (id INTEGER PRIMARY KEY, what TEXT)")

    def promote(self, version: int, target: str) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("UPDATE stages SET stage = 'archived' WHERE stage = 'production'")
        self.db.execute("INSERT OR REPLACE INTO stages VALUES (?, 'production')", (version,))
        self.db.execute("INSERT INTO audit (what) VALUES (?)", (f"promote {version}",))
        self.db.execute("COMMIT")
        link = self.dir / "deploy" / "production"
        tmp = self.dir / "deploy" / f".production.{secrets.token_hex(4)}.tmp"
        os.symlink(target, tmp)
        os.replace(tmp, link)
        fsync_dir(link.parent)

    def close(self) -> None:
        self.db.close()


def _register_pool(sock: Path, model: str, n: int, folder: Path, seed: int, accuracy: list[float]) -> list[str]:
    folder.mkdir(parents=True)
    out = []
    for i in range(n):
        path = folder / f"{model}-{i:04d}.safetensors"
        small_model(path, seed + i)
        res = rpc(sock, "versions.register", {"path": str(path), "name": model,
                                              "metadata": {"metrics": {"accuracy": accuracy[i], "latency_ms": 20.0}}})  # fmt: skip
        out.append(res["version"]["version"])
    return out


def _promotions(sock: Path, plan: Plan, work: Path, deploy: Path, figures: dict[str, float]) -> str:
    n = plan.promotions + 1
    acc = [0.90 + 0.00001 * i for i in range(n)]  # each a little better: every guard passes
    versions = _register_pool(sock, "fraud", n, work / "pool", 1000, acc)
    peer = MlflowPeer(work / "mlflow")
    peer.create_registered_model("fraud")
    for i in range(n):
        peer.create_model_version("fraud", str(work / "pool" / f"fraud-{i:04d}.safetensors"), {"team": "risk"})
    floor = PromotionFloor(work / "floor")
    pointer = deploy / "fraud" / "production"
    rpc(sock, "versions.promote", {"name": "fraud", "version": versions[0], "stage": "production", "reason": "first"})
    peer.set_registered_model_alias("fraud", "production", 1)

    reply: list[float] = []
    checks: list[int] = []

    def regd(i: int) -> None:
        t0 = time.perf_counter()
        out = rpc(sock, "versions.promote", {"name": "fraud", "version": versions[i + 1], "stage": "production",
                                             "reason": f"bench promotion {i}"})  # fmt: skip
        reply.append(time.perf_counter() - t0)
        assert out["demoted"] == versions[i] and all(c["passed"] for c in out["checks"]), out
        checks.append(len(out["checks"]))
        target = out["version"]["artifact"]["stored_path"]
        deadline = time.monotonic() + 10
        while True:
            try:
                if os.readlink(pointer) == target:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the deploy pointer did not move")
            time.sleep(0.0001)

    s = interleave(
        {
            "regd": regd,
            "mlflow": lambda i: peer.set_registered_model_alias("fraud", "production", i + 2),
            "floor": lambda i: floor.promote(i + 2, str(work / "pool" / f"fraud-{i + 1:04d}.safetensors")),
            "roundtrip": lambda i: rpc(sock, "daemon.status"),
        },
        plan.promotions,
    )
    floor.close()
    audit = rpc(sock, "audit.verify")
    model = rpc(sock, "models.get", {"name": "fraud"})
    assert model["production"] == versions[-1], model
    full, ratio_full = faster("promote to production, until the deploy pointer has moved", s["regd"], s["mlflow"],
                              "MLflow `set_registered_model_alias`", 10)  # fmt: skip
    rep, ratio_reply = faster("promote to production, until the reply", reply, s["mlflow"],
                              "MLflow `set_registered_model_alias`", 10)  # fmt: skip
    lim, ratio_floor = within("promote, until the pointer has moved, vs its floor", s["regd"], s["floor"],
                              "commit + symlink swap + dir fsync", 1.5)  # fmt: skip
    lim.target, lim.verdict = "— (context)", f"{times(ratio_floor)} the floor"
    least = median(s["floor"]) + median(s["roundtrip"])
    allowed = median(s["mlflow"]) / 10
    trip = Row(
        "context: a new-connection round trip alone (`daemon.status`)", dist(s["roundtrip"]),
        f"floor + round trip: {ms(least)}", f"regd is {ms(median(s['regd']) - least)} over their sum", "—",
        f"(context: floor + round trip {'over' if least > allowed else 'under'} the {ms(allowed)} that 10× MLflow allows)",
    )  # fmt: skip
    q = max(5, plan.promotions // 4)
    figures.update(promote_vs_mlflow=ratio_full, promote_reply_vs_mlflow=ratio_reply, promote_p50_ms=median(s["regd"]) * 1000)
    return "\n\n".join(
        [
            f"### Promotion with guards, demotion, deploy-pointer swap and audit row ({plan.promotions} promotions)",
            table([full, rep, lim, trip]),
            (f"- Each timed call promotes the next fresh version of `fraud` (registered beforehand, each with a slightly "
            f"better accuracy) to production on a new connection: {checks[0]} guard checks pass, the previous production "
            "version is archived, stage-history and audit rows are written in the same transaction; the daemon moves "
            "the pointer after its reply, so the first row polls `readlink` until it names the new blob. MLflow's "
            f"`set_registered_model_alias(\"fraud\", \"production\", v)` on the same number of versions is the peer "
            "(MLflow has no guards, no demotion, no pointer; its stages API is deprecated)."),
            f"- Afterwards: production is {model['production']}, `audit.verify`: {_audit_text(audit)}.",
            (f"- The cost grows with the model's stage history (2 rows per promotion): promote until the pointer moved, "
            f"median of the first {q} promotions {ms(median(s['regd'][:q]))}, of the last {q} {ms(median(s['regd'][-q:]))} "
            f"(MLflow: {ms(median(s['mlflow'][:q]))} and {ms(median(s['mlflow'][-q:]))})."),
        ]
    )


def _audit_text(audit: dict[str, object]) -> str:
    if audit.get("ok"):
        return f"ok, {audit.get('rows')} rows chained"
    return f"BROKEN at row {audit.get('first_broken')}: {audit.get('detail')}"


# ----------------------------------------------------------------------------- the race


def _race(sock: Path, plan: Plan, work: Path, deploy: Path, figures: dict[str, float]) -> str:
    model = "fraud-race"
    rng = random.Random(5)
    acc = [round(rng.uniform(0.85, 0.95), 4) for _ in range(plan.race_versions)]  # some regress past 0.02: -32003
    versions = _register_pool(sock, model, plan.race_versions, work / "race-pool", 50_000, acc)
    rpc(sock, "versions.promote", {"name": model, "version": versions[0], "stage": "production", "reason": "first"})

    stop = threading.Event()
    lock = threading.Lock()
    outcomes: Counter[str] = Counter()
    ok_latency: dict[str, list[float]] = {"promote": [], "rollback": []}
    bad: list[str] = []
    reads = Counter[str]()

    def client(i: int) -> None:
        r = random.Random(i)
        try:
            conn = Conn(sock)
        except OSError as exc:
            with lock:
                outcomes["connect failed"] += 1
                bad.append(f"client {i}: {exc}")
            return
        try:
            while not stop.is_set():
                action = "promote" if r.random() < 0.6 else "rollback"
                if action == "promote":
                    params = {"name": model, "version": r.choice(versions), "stage": "production", "reason": f"race {i}"}
                    method = "versions.promote"
                else:
                    params, method = {"name": model, "reason": f"race {i}"}, "models.rollback"
                t0 = time.perf_counter()
                try:
                    conn.call(method, params)
                    key = f"{action} ok"
                    with lock:
                        ok_latency[action].append(time.perf_counter() - t0)
                except RpcError as exc:
                    key = f"{action} {exc.code}"
                    if exc.code not in CONTRACT:
                        with lock:
                            bad.append(f"{method}: {exc}")
                except Exception as exc:  # noqa: BLE001 - a transport failure is outside the contract too
                    key = f"{action} {type(exc).__name__}"
                    with lock:
                        bad.append(f"{method}: {type(exc).__name__}: {exc}")
                    conn.close()
                    conn = Conn(sock)
                with lock:
                    outcomes[key] += 1
        finally:
            conn.close()

    def reader() -> None:
        conn = Conn(sock)
        try:
            while not stop.is_set():
                m = conn.call("models.get", {"name": model})
                if not m.get("production"):
                    reads["models.get: no production"] += 1
                reads["models.get"] += 1
                listed = conn.call("versions.list", {"name": model, "stage": "production"})["items"]
                if len(listed) != 1:
                    reads[f"versions.list: {len(listed)} in production"] += 1
                reads["versions.list"] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=reader)] + [threading.Thread(target=client, args=(i,)) for i in range(plan.clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(plan.race_s)
    stop.set()
    for t in threads:
        t.join(120)
    elapsed = time.monotonic() - t0
    time.sleep(1)  # let the last pointer swap land
    final = rpc(sock, "models.get", {"name": model})
    prod = rpc(sock, "versions.list", {"name": model, "stage": "production"})["items"]
    audit = rpc(sock, "audit.verify")
    target = rpc(sock, "versions.get", {"name": model, "version": "production"})["artifact"]["stored_path"]
    pointer_ok = os.readlink(deploy / model / "production") == target

    codes = Counter[str]()
    for key, n in outcomes.items():
        codes[key.split(" ", 1)[1]] += n
    foreign = {c: n for c, n in codes.items() if c != "ok" and not (c.lstrip("-").isdigit() and int(c) in CONTRACT)}
    violations = sum(n for k, n in reads.items() if ":" in k)
    changes = outcomes["promote ok"] + outcomes["rollback ok"]
    figures.update(race_foreign_errors=float(sum(foreign.values())), race_read_violations=float(violations),
                   race_changes_per_s=changes / elapsed)  # fmt: skip
    by_code = ", ".join(f"`{c}` × {n}" for c, n in sorted(codes.items()))
    rows = [
        Row(
            f"{plan.clients} clients promoting / rolling back `{model}` for {elapsed:.0f} s: errors outside the contract",
            f"{sum(foreign.values())} ({', '.join(f'{c} × {n}' for c, n in foreign.items()) or 'none'})",
            f"all answers: {by_code}",
            "—",
            "0 (only -32002, -32003, -32005)",
            "met" if not foreign and not bad else "**NOT met**",
        ),
        Row(
            "a reader polling `models.get` and `versions.list stage=production` in a loop",
            f"{violations} bad reads of {reads['models.get'] + reads['versions.list']}",
            "—",
            "—",
            "0 reads with no or two production versions",
            "met" if violations == 0 else "**NOT met**: " + ", ".join(f"{k} × {n}" for k, n in reads.items() if ":" in k),
        ),
        Row(
            "state afterwards",
            f"{len(prod)} production version ({final['production']}); pointer {'matches' if pointer_ok else 'DOES NOT match'}; "
            f"audit chain {'ok' if audit.get('ok') else 'BROKEN'}",
            "—",
            "—",
            "1 production, pointer on it, chain intact",
            "met" if len(prod) == 1 and pointer_ok and audit.get("ok") else "**NOT met**",
        ),
    ]
    lat = [f"{a}: {dist(v)}" for a, v in ok_latency.items() if v]
    notes = [
        (f"- {changes} successful changes ({changes / elapsed:.0f}/s: {outcomes['promote ok']} promotions, "
        f"{outcomes['rollback ok']} rollbacks); latency of the successful ones under contention: {'; '.join(lat)}."),
        (f"- Each client keeps one connection and loops: 60 % promote a random one of {plan.race_versions} versions "
        "(accuracies 0.85–0.95, so `max_regression` refuses some: -32003; archived and current ones: -32005), 40 % "
        "roll back (-32005 once no earlier production version is left). The reader checks `models.get` names a "
        "production version and `versions.list` with `stage = production` returns exactly one, in a loop on its own "
        "connection, from just after the first promotion to the end."),
    ]
    if bad:
        notes.append("- First errors outside the contract: " + "; ".join(f"`{b}`" for b in bad[:5]))
    return "\n\n".join([f"### {plan.clients} concurrent clients on one model", table(rows), "\n".join(notes)])

