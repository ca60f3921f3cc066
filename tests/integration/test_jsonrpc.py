"""The socket speaks JSON-RPC 2.0 exactly as the specification says, and survives bad input."""

from __future__ import annotations

import json
import os
import socket
import stat

from tests.rawsocket import call, exchange


def test_a_request_gets_its_result_with_its_id(daemon):
    reply = call(daemon.socket, "daemon.status", req_id="abc")
    assert reply["jsonrpc"] == "2.0"
    assert reply["id"] == "abc"
    assert reply["result"]["pid"] == daemon.proc.pid


def test_parse_error_is_32700_with_null_id(daemon):
    (reply,) = exchange(daemon.socket, b'{"jsonrpc": "2.0", "method": "daemon.status", "id": 1\n')
    assert reply["error"]["code"] == -32700
    assert reply["id"] is None


def test_invalid_requests_are_32600(daemon):
    for bad in (b'{"jsonrpc": "1.0", "method": "x", "id": 1}', b'{"jsonrpc": "2.0", "method": 5, "id": 1}',
                b'{"jsonrpc": "2.0", "method": "x", "id": {"a": 1}}', b'"just a string"', b"[]",
                b'{"jsonrpc": "2.0", "method": "daemon.status", "params": "nope", "id": 2}'):  # fmt: skip
        (reply,) = exchange(daemon.socket, bad + b"\n")
        assert reply["error"]["code"] == -32600, bad


def test_unknown_method_is_32601(daemon):
    reply = call(daemon.socket, "models.explode")
    assert reply["error"]["code"] == -32601


def test_invalid_params_are_32602_with_the_pydantic_errors(daemon):
    reply = call(daemon.socket, "models.get", {"name": "../etc/passwd"})
    assert reply["error"]["code"] == -32602
    assert reply["error"]["data"][0]["loc"] == ["name"]
    reply = call(daemon.socket, "models.get", {"name": "ok", "surprise": 1})
    assert reply["error"]["code"] == -32602


def test_params_by_position(daemon):
    reply = call(daemon.socket, "models.get", ["nope"])
    assert reply["error"]["code"] == -32001


def test_notifications_get_no_answer_even_on_error(daemon):
    payload = b'{"jsonrpc": "2.0", "method": "no.such"}\n{"jsonrpc": "2.0", "method": "daemon.status", "id": 7}\n'
    replies = exchange(daemon.socket, payload, replies=2, timeout=2)
    assert [r["id"] for r in replies] == [7]


def test_batches_answer_every_request_and_skip_notifications(daemon):
    batch = [
        {"jsonrpc": "2.0", "method": "daemon.status", "id": 1},
        {"jsonrpc": "2.0", "method": "daemon.status"},
        {"jsonrpc": "2.0", "method": "no.such", "id": 2},
        5,
    ]
    (replies,) = exchange(daemon.socket, json.dumps(batch).encode() + b"\n")
    assert isinstance(replies, list) and len(replies) == 3
    assert "result" in replies[0] and replies[1]["error"]["code"] == -32601 and replies[2]["error"]["code"] == -32600


def test_a_batch_of_only_notifications_gets_nothing(daemon):
    batch = [{"jsonrpc": "2.0", "method": "daemon.status"}] * 2
    payload = json.dumps(batch).encode() + b"\n" + b'{"jsonrpc":"2.0","method":"daemon.status","id":9}\n'
    replies = exchange(daemon.socket, payload, replies=2, timeout=2)
    assert [r["id"] for r in replies] == [9]


def test_an_oversized_message_is_refused_and_the_connection_closed(daemon_factory):
    d = daemon_factory("[api]\nmax_message_bytes = 4096\n")
    big = json.dumps({"jsonrpc": "2.0", "method": "models.get", "params": {"name": "x" * 10_000}, "id": 1}).encode()
    replies = exchange(d.socket, big + b"\n" + b'{"jsonrpc":"2.0","method":"daemon.status","id":2}\n', replies=2, timeout=3)
    assert len(replies) == 1 and replies[0]["error"]["code"] == -32600
    assert call(d.socket, "daemon.status")["result"]["pid"] == d.proc.pid


def test_silent_and_half_finished_clients_cost_nothing(daemon):
    idle = [socket.socket(socket.AF_UNIX) for _ in range(50)]
    for s in idle:
        s.connect(str(daemon.socket))
    half = socket.socket(socket.AF_UNIX)
    half.connect(str(daemon.socket))
    half.sendall(b'{"jsonrpc": "2.0", "method": "daemon.st')
    half.close()
    assert call(daemon.socket, "daemon.status")["result"]["pid"] == daemon.proc.pid
    for s in idle:
        s.close()


def test_deeply_nested_json_is_an_error_not_a_crash(daemon):
    (reply,) = exchange(daemon.socket, b"[" * 100_000 + b"]" * 100_000 + b"\n")
    assert reply["error"]["code"] in (-32700, -32600)
    assert call(daemon.socket, "daemon.status")["result"]["pid"] == daemon.proc.pid


def test_socket_is_0600_in_a_0700_directory(daemon):
    assert stat.S_IMODE(os.stat(daemon.socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(daemon.socket.parent).st_mode) == 0o700


def test_rpc_discover_is_an_openrpc_document_of_every_method(daemon):
    doc = call(daemon.socket, "rpc.discover")["result"]
    assert doc["openrpc"].startswith("1.")
    names = {m["name"] for m in doc["methods"]}
    assert {"versions.register", "versions.search", "events.subscribe", "gc.run"} <= names
    register = next(m for m in doc["methods"] if m["name"] == "versions.register")
    assert {p["name"] for p in register["params"]} >= {"path", "name", "metadata"}
