"""Stages, guards, approvals, promotion, rollback, deploy pointers, hooks: governed and audited."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import os
import signal
import threading
import time

import numpy as np
import pytest

from regd.errors import GuardFailed, InvalidParams, InvalidTransition, PermissionDenied
from tests.modelfiles import write_safetensors
from tests.waiting import wait_for


def weights(path, seed=0):
    rng = np.random.default_rng(seed)
    return write_safetensors(path, {"w": rng.standard_normal((4, 4)).astype(np.float32)})


def register(client, tmp_path, n, name="fraud", **metrics_by_version):
    out = []
    for i in range(n):
        metrics = {"accuracy": 0.9 + i * 0.01}
        out.append(client.register(weights(tmp_path / f"{name}{i}.safetensors", i), name=name, metrics=metrics).version)
    return out


def promote(client, version, stage="production", name="fraud", **kw):
    return client.call("versions.promote", {"name": name, "version": version, "stage": stage, "reason": "test", **kw})


def stages(client, name="fraud"):
    return {v["version"]: v["stage"] for v in client.call("versions.list", {"name": name})["items"]}


def test_promotion_archives_the_previous_production_in_the_same_change(client, tmp_path):
    register(client, tmp_path, 2)
    promote(client, "1.0.0", "staging")
    promote(client, "1.0.0")
    result = promote(client, "1.1.0")
    assert result["from"] == "none" and result["to"] == "production" and result["demoted"] == "1.0.0"
    assert stages(client) == {"1.0.0": "archived", "1.1.0": "production"}
    assert client.model("fraud").production == "1.1.0"


def test_invalid_transitions_name_the_allowed_ones(client, tmp_path):
    register(client, tmp_path, 2)
    promote(client, "1.0.0")
    promote(client, "1.1.0")
    with pytest.raises(InvalidTransition) as err:
        promote(client, "1.0.0")  # archived -> production only by rollback
    assert err.value.code == -32005 and err.value.data["allowed"] == ["staging"]
    with pytest.raises(InvalidTransition):
        promote(client, "1.1.0")  # already there
    promote(client, "1.0.0", "staging")  # archived -> staging re-validates
    assert stages(client)["1.0.0"] == "staging"
    with pytest.raises(InvalidParams):
        client.call("versions.promote", {"name": "fraud", "version": "1.0.0", "stage": "limbo", "reason": "x"})


def test_reasons_are_required_and_bounded(client, tmp_path):
    register(client, tmp_path, 1)
    with pytest.raises(InvalidParams):
        client.call("versions.promote", {"name": "fraud", "version": "1.0.0", "stage": "staging"})
    with pytest.raises(InvalidParams):
        client.call("versions.promote", {"name": "fraud", "version": "1.0.0", "stage": "staging", "reason": "x" * 5000})
    assert stages(client)["1.0.0"] == "none"


POLICY = """
[policy."fraud*".production]
min = { accuracy = 0.905 }
max_regression = { accuracy = 0.001 }
approvals = 1
require = ["env_lock", "safe_format"]
"""


def test_a_refused_promotion_lists_every_failed_check_and_changes_nothing(daemon_factory, tmp_path):
    d = daemon_factory(POLICY)
    client = d.client()
    register(client, tmp_path, 1)
    check = client.call("versions.check", {"name": "fraud", "version": "1.0.0", "stage": "production"})
    failed = {c["rule"] for c in check["checks"] if not c["passed"]}
    assert failed == {"min accuracy >= 0.905", "approvals >= 1", "require env_lock"}
    with pytest.raises(GuardFailed) as err:
        promote(client, "1.0.0")
    assert err.value.code == -32003
    assert {c["rule"] for c in err.value.checks if not c["passed"]} == failed
    assert stages(client) == {"1.0.0": "none"}
    assert client.call("audit.list", {"action": "guard.failed"})["items"][0]["version"] == "1.0.0"


def test_staging_has_no_guards_here_and_approvals_exclude_the_registrant(daemon_factory, tmp_path):
    d = daemon_factory(POLICY)
    client = d.client()
    register(client, tmp_path, 1)
    promote(client, "1.0.0", "staging")
    with pytest.raises(PermissionDenied) as err:
        client.call("versions.approve", {"name": "fraud", "version": "1.0.0"})
    assert err.value.code == -32004


def test_force_overrides_failed_guards_for_an_admin_and_is_audited(daemon_factory, tmp_path):
    d = daemon_factory(POLICY)
    client = d.client()
    register(client, tmp_path, 1)
    result = promote(client, "1.0.0", force=True)
    assert result["forced"] and stages(client)["1.0.0"] == "production"
    (row,) = client.call("audit.list", {"action": "version.force"})["items"]
    assert {c["rule"] for c in row["details"]["forced_past"]} >= {"approvals >= 1"}


def test_max_regression_compares_with_the_current_production(daemon_factory, tmp_path):
    d = daemon_factory('[policy."m".production]\nmax_regression = { loss = 0.05 }\nlower_is_better = ["loss"]\n')
    client = d.client()
    for i, loss in enumerate([0.30, 0.40, 0.32]):
        client.register(weights(tmp_path / f"{i}.safetensors", i), name="m", metrics={"loss": loss})
    promote(client, "1.0.0", name="m")
    with pytest.raises(GuardFailed):
        promote(client, "1.1.0", name="m")  # 0.40 is worse than 0.30 by more than 0.05
    promote(client, "1.2.0", name="m")


def test_rollback_restores_the_previous_production_from_history(client, tmp_path):
    register(client, tmp_path, 3)
    promote(client, "1.2.0")
    promote(client, "1.0.0", "staging")
    promote(client, "1.0.0")  # production went 1.2.0 -> 1.0.0: history, not numbers, decides
    result = client.call("models.rollback", {"name": "fraud", "reason": "latency regression"})
    assert result["restored"]["version"] == "1.2.0" and result["archived"]["version"] == "1.0.0"
    assert result["archived"]["rolled_back"] is True
    assert stages(client) == {"1.0.0": "archived", "1.1.0": "none", "1.2.0": "production"}


def test_rollback_to_must_be_an_earlier_production_version(client, tmp_path):
    register(client, tmp_path, 3)
    with pytest.raises(InvalidTransition):
        client.call("models.rollback", {"name": "fraud", "reason": "nothing yet"})
    promote(client, "1.0.0")
    promote(client, "1.1.0")
    promote(client, "1.2.0")
    with pytest.raises(InvalidTransition):
        client.call("models.rollback", {"name": "fraud", "to": "1.2.0", "reason": "already there"})
    result = client.call("models.rollback", {"name": "fraud", "to": "1.0.0", "reason": "back to the first"})
    assert result["restored"]["version"] == "1.0.0"
    register(client, tmp_path, 4)  # 1.3.0 is new and never in production
    with pytest.raises(InvalidTransition):
        client.call("models.rollback", {"name": "fraud", "to": "1.3.0", "reason": "x"})


def test_history_is_the_stage_and_alias_timeline_newest_first(client, tmp_path):
    register(client, tmp_path, 2)
    promote(client, "1.0.0")
    client.set_alias("fraud", "champion", "1.0.0", reason="best so far")
    promote(client, "1.1.0")
    items = client.call("models.history", {"name": "fraud"})["items"]
    assert [(i["kind"], i.get("version"), i["to"]) for i in items[:3]] == [
        ("stage", "1.1.0", "production"),
        ("stage", "1.0.0", "archived"),
        ("alias", "1.0.0", "1.0.0"),
    ]


def test_deploy_pointers_follow_stages_and_aliases(daemon_factory, tmp_path):
    deploy = tmp_path / "deploy"
    d = daemon_factory(f'deploy_dir = "{deploy}"\n')
    client = d.client()
    register(client, tmp_path, 2)
    promote(client, "1.0.0")
    client.set_alias("fraud", "champion", "1.1.0")
    prod, champ = deploy / "fraud" / "production", deploy / "fraud" / "@champion"
    wait_for(lambda: prod.is_symlink() and champ.is_symlink())
    assert os.readlink(prod) == client.path("fraud", "1.0.0")
    assert os.readlink(champ) == client.path("fraud", "1.1.0")
    promote(client, "1.1.0")
    wait_for(lambda: os.readlink(prod) == client.path("fraud", "1.1.0"))
    client.call("aliases.delete", {"name": "fraud", "alias": "champion"})
    wait_for(lambda: not champ.exists())


def test_pointers_are_repaired_at_start(daemon_factory, tmp_path):
    deploy = tmp_path / "deploy"
    d = daemon_factory(f'deploy_dir = "{deploy}"\n')
    client = d.client()
    register(client, tmp_path, 1)
    promote(client, "1.0.0")
    prod = deploy / "fraud" / "production"
    wait_for(prod.is_symlink)
    d.stop()
    prod.unlink()
    d.start()
    wait_for(prod.is_symlink)


def test_on_change_hook_runs_with_the_change_in_its_environment(daemon_factory, tmp_path):
    out = tmp_path / "hook.out"
    d = daemon_factory(
        f'[policy."fraud".production]\non_change = "env | grep ^REGD_ | sort > {out}"\n'
    )
    client = d.client()
    register(client, tmp_path, 1)
    promote(client, "1.0.0")
    wait_for(out.exists)
    env = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert env["REGD_MODEL"] == "fraud" and env["REGD_VERSION"] == "1.0.0" and env["REGD_STAGE"] == "production"
    assert env["REGD_REASON"] == "test" and env["REGD_PATH"] == client.path("fraud", "1.0.0")
    wait_for(lambda: client.call("audit.list", {"action": "hook.ok"})["items"])


def test_a_hanging_or_failing_hook_never_blocks_or_undoes_a_promotion(daemon_factory, tmp_path):
    d = daemon_factory('[policy."fraud".production]\non_change = "sleep 30"\nhook_timeout_s = 1\n'
                       '[policy."fraud".staging]\non_change = "exit 3"\n')  # fmt: skip
    client = d.client()
    register(client, tmp_path, 2)
    t0 = time.monotonic()
    promote(client, "1.0.0")
    assert time.monotonic() - t0 < 20  # answered long before the hook's 30 s: it did not wait for it
    promote(client, "1.1.0", "staging")
    failures = wait_for(lambda: len(client.status()["hook_failures"]) >= 2 and client.status()["hook_failures"])
    assert {f["kind"] for f in failures} == {"on_change"}
    assert any("timed out" in f["detail"] for f in failures) and any("exit 3" in f["detail"] for f in failures)
    assert stages(client) == {"1.0.0": "production", "1.1.0": "staging"}
    assert len(client.call("audit.list", {"action": "hook.failed"})["items"]) == 2


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list = []
    fail_first = 0

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Receiver.fail_first > 0:
            _Receiver.fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        _Receiver.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhooks_are_signed_and_retried(daemon_factory, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Receiver.received, _Receiver.fail_first = [], 1
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    d = daemon_factory(f'[policy."fraud".production]\nwebhooks = [{{ url = "{url}", secret = "s3cret", retries = 3 }}]\n')
    client = d.client()
    register(client, tmp_path, 1)
    promote(client, "1.0.0")
    wait_for(lambda: _Receiver.received, timeout=20)
    server.shutdown()
    headers, body = _Receiver.received[0]
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Regd-Signature"] == expected
    assert json.loads(body)["version"] == "1.0.0"
    ok = wait_for(lambda: client.call("audit.list", {"action": "hook.ok"})["items"])
    assert "2 attempt" in ok[0]["details"]["detail"]


def test_events_are_published_for_every_change(daemon, tmp_path):
    client = daemon.client()
    assert client.status()["subscribers"] == 0
    listener = daemon.client(timeout=20)
    events = listener.events(["version", "alias"])
    assert client.status()["subscribers"] == 1  # the client subscribes before it returns
    register(client, tmp_path, 1)
    promote(client, "1.0.0")
    client.set_alias("fraud", "champion", "1.0.0")
    topics = [next(events).topic for _ in range(3)]
    assert topics == ["version.registered", "version.stage", "alias"]


def test_sighup_reloads_policies_and_a_broken_config_is_refused(daemon_factory, tmp_path):
    d = daemon_factory()
    client = d.client()
    register(client, tmp_path, 1)
    d.write_config('[policy."fraud".production]\nmin = { accuracy = 0.99 }\n')
    os.kill(d.proc.pid, signal.SIGHUP)
    wait_for(lambda: not client.call("versions.check", {"name": "fraud", "version": "1.0.0", "stage": "production"})["passed"])
    d.config_path.write_text(d.config_path.read_text() + "\n[policy.broken\n")
    from regd.errors import Conflict

    with pytest.raises(Conflict) as err:
        client.call("daemon.reload")
    assert "line" in err.value.message
    assert not client.call("versions.check", {"name": "fraud", "version": "1.0.0", "stage": "production"})["passed"]
