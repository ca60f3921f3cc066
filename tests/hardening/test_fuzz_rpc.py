"""Fuzz the socket API with hypothesis: messages built from the protocol's own schemas, and beyond them.

Every method's params model (``regd.protocol.METHODS``) is turned into a strategy by ``from_schema``
(a small builder over pydantic's JSON schema: types, enums, bounds, patterns, nested objects, maps).
On top of that: mutated params (wrong types, huge and non-finite numbers, NUL bytes, deep nesting,
unknown keys, params as arrays or scalars), hostile envelopes, batches mixing good and bad, and raw
bytes (invalid UTF-8, truncations, nesting bombs, oversize lines).

Each message goes over the real socket, followed by a ``daemon.status`` probe on the same connection:
every line that comes back must be a valid JSON-RPC response (strict JSON, one of the contract's codes,
a result that validates against the method's result model), the probe must answer within
``DEADLINE`` (no hang), and afterwards the daemon still answers, its audit chain and blobs verify.

-32603 is a failure, except for inputs matching ``KNOWN_BUGS``; so are a non-JSON answer, a dropped
connection and a failed background task in the daemon's log. A bug the fuzzers find is pinned by a
strict xfail at the end of this file with a tolerance here; both go once it is fixed (the tests of
the bugs already fixed stay there as regression tests).

``REGD_FUZZ_EXAMPLES`` sets the examples per test (CI default 300; the bench runs 2,500 per test).
``REGD_FUZZ_REPORT`` names a JSON-lines file to which each test appends its figures (for the bench).
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from regd.protocol import METHODS
from tests.hardening.crashlib import CONTRACT_CODES
from tests.modelfiles import write_hf_dir, write_onnx, write_safetensors

EXAMPLES = int(os.environ.get("REGD_FUZZ_EXAMPLES", "300"))
DEADLINE = 30.0
"""Seconds the daemon has to answer one message and the probe after it (they take milliseconds)."""
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
MAX_MESSAGE = 1 << 20
"""``api.max_message_bytes``'s default."""


# ----------------------------------------------------------------------------- known bugs


KNOWN_BUGS: dict[str, Callable[[str, Any], bool]] = {}
"""Params that answer -32603 today (see the xfails at the end); the fuzzers tolerate exactly these.

Empty since NUL bytes in paths, huge ``older_than_days``, symlink loops in registered directories
and unresolvable watch paths were fixed (their tests are at the end of this file)."""


def known_bug(method: Any, params: Any) -> str | None:
    if not isinstance(method, str):
        return None
    if isinstance(params, list) and method in METHODS:  # positional: map back to names
        params = dict(zip(METHODS[method].params.model_fields, params, strict=False))
    for name, matches in KNOWN_BUGS.items():
        if matches(method, params):
            return name
    return None


def bugs_in(msg: Any) -> set[str]:
    """The known bugs a (decoded) message would trigger, batches included."""
    out = set()
    for m in msg if isinstance(msg, list) else [msg]:
        if not isinstance(m, dict):
            continue
        bug = known_bug(m.get("method"), m.get("params"))
        if bug:
            out.add(bug)
    return out


# ----------------------------------------------------------------------------- the world the fuzzer talks about


class World:
    """A daemon with a few models, aliases and stages, and a sandbox of paths to register from."""

    def __init__(self, d: Any, sandbox: Path, paths: list[str]) -> None:
        self.d, self.sandbox, self.paths = d, sandbox, paths
        self.stats: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.sent = 0
        self.known_sent: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"World({self.sandbox}, {self.sent} sent)"


NAMES = ["alpha", "beta", "hf", "nope", "a", "Z9._-"]
REFS = ["latest", "1.0.0", "1.1.0", "2.0.0", "9.9.9", "production", "staging", "none", "archived", "@champion",
        "@challenger", "@nope", "@", "1.0", "v1.0.0", "1.0.0-rc1", "LATEST", "-1.0.0"]  # fmt: skip
FIELDS = ["name", "model", "version", "stage", "format", "digest", "size", "created_at", "created_by", "alias",
          "run_id", "description", "metrics.acc", "metrics.loss", "tags.team", "params.lr", "bogus", "metrics",
          "tags.'odd key'"]  # fmt: skip
OPS = ["=", "!=", "<", "<=", ">", ">=", "like", "not like", "in", "not in", "~", "==", "is"]
VALUES = ["'alpha'", "'1.0.0'", "'production'", "0.5", "-1", "1e308", "1e999", "null", "true", "'%a%'",
          "('a', 'b')", "()", "'unterminated", "\"dq\"", "'2024-01-01'", "'it''s'", "0x10"]  # fmt: skip


def comparisons() -> st.SearchStrategy[str]:
    return st.builds(lambda f, o, v: f"{f} {o} {v}", st.sampled_from(FIELDS), st.sampled_from(OPS), st.sampled_from(VALUES))


FILTERS = st.recursive(
    comparisons(),
    lambda inner: st.one_of(
        st.builds(lambda a, op, b: f"{a} {op} {b}", inner, st.sampled_from(["and", "or", "AND", "andx"]), inner),
        st.builds(lambda a: f"not {a}", inner),
        st.builds(lambda a: f"({a})", inner),
    ),
    max_leaves=8,
) | st.sampled_from(["", "(" * 70 + "name = 'a'" + ")" * 70, " or ".join(["name = 'a'"] * 250), "name in ("
                    + ",".join(["'a'"] * 1200) + ")"]) | st.text(max_size=60)  # fmt: skip


def overrides(world: World) -> dict[str, st.SearchStrategy[Any]]:
    """Values by property name that reach past 'not found': real names, refs, filters, paths."""
    junk_paths = st.text(max_size=30).map(lambda t: str(world.sandbox / "nope" / t.replace("/", "_")))
    return {
        # never free text for paths: "/" or "~" would have the daemon copy a whole filesystem
        "path": st.sampled_from(world.paths) | junk_paths,
        "b_path": st.sampled_from(world.paths) | junk_paths,
        "env_lock": st.sampled_from(world.paths) | junk_paths,
        "name": st.sampled_from(NAMES),
        "alias": st.sampled_from(["champion", "challenger", "x"]),
        "version": st.sampled_from(REFS),
        "to": st.sampled_from(REFS),
        "filter": FILTERS,
        "order_by": st.builds(lambda f, d: f"{f}{d}", st.sampled_from(FIELDS), st.sampled_from(["", " asc", " desc", " up"])),
        "tag": st.sampled_from(["team=risk", "team=", "=x", "a=b=c", "x" * 129 + "=1"]),
        "query": st.sampled_from(["al*", "*", "[", "alpha", "%", "_", "?"]),
        "cursor": st.sampled_from(["", "zzz", "eyJ4IjoxfQ", "eyJ4IjoxfQ==", "MTAw", "\x00", "a" * 512]),
        "topics": st.lists(st.sampled_from(["version", "version.stage", "alias", "", "x" * 64]), max_size=3),
    }


def from_schema(schema: dict[str, Any], defs: dict[str, Any], over: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """A strategy for JSON values matching a pydantic JSON schema (the parts regd's params use)."""
    if "$ref" in schema:
        return st.deferred(lambda: from_schema(defs[schema["$ref"].rsplit("/", 1)[1]], defs, over))
    if "anyOf" in schema:
        return st.one_of([from_schema(s, defs, over) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        lo, hi = schema.get("minimum"), schema.get("maximum")
        edges = [v for v in (lo, hi) if v is not None]
        return st.integers(lo, hi) | (st.sampled_from(edges) if edges else st.nothing())
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False)
    if kind == "string":
        if schema.get("format") == "date-time":
            return st.datetimes().map(lambda d: d.isoformat()) | st.sampled_from(["2024-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59Z"])
        lo, hi = schema.get("minLength", 0), schema.get("maxLength")
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        text = st.text(min_size=lo, max_size=min(hi if hi is not None else 40, 40))
        return text | st.just("x" * hi) if hi is not None else text
    if kind == "array":
        items = from_schema(schema.get("items", {}), defs, over)
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=min(schema.get("maxItems", 4), 4))
    if kind == "object" and "properties" in schema:
        required = set(schema.get("required", []))
        props = {k: over[k] | from_schema(v, defs, over) if k in over and k not in ("path", "b_path", "env_lock")
                 else over.get(k, from_schema(v, defs, over)) for k, v in schema["properties"].items()}  # fmt: skip
        return st.fixed_dictionaries(
            {k: s for k, s in props.items() if k in required}, optional={k: s for k, s in props.items() if k not in required}
        )
    if kind == "object":
        keys = st.text(min_size=schema.get("propertyNames", {}).get("minLength", 0), max_size=20)
        extra = schema.get("additionalProperties", True)
        values = json_values() if extra is True else from_schema(extra, defs, over)
        return st.dictionaries(keys, values, max_size=min(schema.get("maxProperties", 4), 4))
    return json_values()


def json_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=max_leaves)


HOSTILE = st.sampled_from([
    10**30, -(10**30), 2**63, -(2**63) - 1, 2**31, -1, 0, 1e308, -1e308, 5e-324, float("inf"), float("-inf"),
    float("nan"), "", "\x00", "a\x00b", "\ud800", "x" * 5000, "☃" * 300, [], {}, [[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]],
    {"a": {"b": {"c": {"d": {}}}}}, True, False, None, "null", "1", "1.0.0", "../../etc/passwd",
])  # fmt: skip


def deep(n: int) -> Any:
    value: Any = "bottom"
    for i in range(n):
        value = [value] if i % 2 else {"k": value}
    return value


@st.composite
def mutated(draw: st.DrawFn, params: dict[str, Any]) -> Any:
    """Push valid params past their schema: wrong types, bounds, unknown keys, shapes."""
    params = dict(params)
    how = draw(st.sampled_from(["value", "value", "value", "extra", "drop", "array", "scalar", "deep", "none"]))
    if how == "value":
        key = draw(st.sampled_from(sorted(params) or ["name"]))
        params[key] = draw(HOSTILE | json_values() | st.integers(0, 100).map(deep))
    elif how == "extra":
        params[draw(st.text(max_size=10))] = draw(json_values())
    elif how == "drop" and params:
        params.pop(draw(st.sampled_from(sorted(params))))
    elif how == "array":
        return list(params.values()) + draw(st.lists(json_values(), max_size=2))
    elif how == "scalar":
        return draw(st.sampled_from([1, "x", True, 1.5]))
    elif how == "deep":  # deeper bombs go as raw bytes (the printer of failing examples recurses too)
        return deep(draw(st.integers(50, 120)))
    elif how == "none":
        return None
    return params


def params_for(world: World, method: str) -> st.SearchStrategy[Any]:
    schema = METHODS[method].params.model_json_schema()
    return from_schema(schema, schema.get("$defs", {}), overrides(world))


# ----------------------------------------------------------------------------- sending and checking


def _strict(text: str) -> Any:
    def reject(const: str) -> Any:
        raise ValueError(f"{const} is not JSON")

    return json.loads(text, parse_constant=reject)


def encode(msg: Any, ascii_only: bool = True) -> bytes:
    text = json.dumps(msg, ensure_ascii=ascii_only, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


@dataclass
class Exchange:
    lines: list[bytes]
    latency: float
    closed: bool


def exchange(sock_path: Path, payload: bytes) -> Exchange:
    """Send ``payload`` then a ``daemon.status`` probe; return every line before the probe's answer."""
    probe = b'{"jsonrpc":"2.0","id":"fuzz-probe","method":"daemon.status"}\n'
    lines: list[bytes] = []
    t0 = time.monotonic()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(DEADLINE)
        s.connect(str(sock_path))
        try:
            s.sendall(payload if payload.endswith(b"\n") else payload + b"\n")
            s.sendall(probe)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed on an oversize line: what it answered is still readable, or nothing
        buf = b""
        while True:
            try:
                chunk = s.recv(1 << 16)
            except ConnectionResetError:
                chunk = b""
            except TimeoutError:
                raise AssertionError(f"no answer within {DEADLINE} s to {payload[:300]!r}") from None
            if not chunk:
                return Exchange(lines + ([buf] if buf.strip() else []), time.monotonic() - t0, True)
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if b'"id":"fuzz-probe"' in line and line.startswith(b'{"jsonrpc":"2.0","id":"fuzz-probe","result"'):
                    return Exchange(lines, time.monotonic() - t0, False)
                lines.append(line)


def check_single(obj: Any, allowed: set[str], problems: list[str], method: str | None = None) -> None:
    if not isinstance(obj, dict):
        problems.append(f"not a response object: {obj!r:.200}")
        return
    if "method" in obj and "id" not in obj:
        if obj["method"] not in ("event", "progress", "events.dropped") or set(obj) - {"jsonrpc", "method", "params"}:
            problems.append(f"odd notification {obj!r:.200}")
        return
    if obj.get("jsonrpc") != "2.0" or "id" not in obj or set(obj) - {"jsonrpc", "id", "result", "error"}:
        problems.append(f"malformed response {obj!r:.300}")
    if ("result" in obj) == ("error" in obj):
        problems.append(f"a response needs exactly one of result and error: {obj!r:.300}")
    if "error" in obj:
        err = obj["error"]
        if not isinstance(err, dict) or not isinstance(err.get("code"), int) or not isinstance(err.get("message"), str):
            problems.append(f"malformed error {err!r:.300}")
        elif err["code"] == -32603:
            if not allowed & set(KNOWN_BUGS):
                problems.append(f"internal error -32603: {err['message']}")
        elif err["code"] not in CONTRACT_CODES:
            problems.append(f"code {err['code']} is not in the contract: {err['message']}")
    elif method in METHODS and obj.get("id") is not None:
        try:
            TypeAdapter(METHODS[method].result).validate_python(obj["result"])
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{method} result does not match its model: {exc!s:.500}")


def send_and_check(world: World, payload: bytes, decoded: Any = None) -> list[Any]:
    """Send one message and check everything it got back; return the parsed answers."""
    allowed = bugs_in(decoded) if decoded is not None else set()
    for bug in allowed:
        world.known_sent[bug] += 1
    world.sent += 1
    ex = exchange(world.d.socket, payload)
    world.latencies.append(ex.latency)
    problems: list[str] = []
    answers = []
    methods: dict[Any, str] = {}  # id -> method, for ids used once (a batch may repeat them)
    requests = decoded if isinstance(decoded, list) else [decoded]
    ids = Counter(json.dumps(m.get("id")) for m in requests if isinstance(m, dict))
    for m in requests:
        if isinstance(m, dict) and isinstance(m.get("method"), str) and ids[json.dumps(m.get("id"))] == 1:
            methods[json.dumps(m.get("id"))] = m["method"]
    for line in ex.lines:
        try:
            obj = _strict(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            problems.append(f"answer is not strict JSON ({exc}): {line[:300]!r}")
            continue
        answers.append(obj)
        for single in obj if isinstance(obj, list) else [obj]:
            mid = json.dumps(single.get("id")) if isinstance(single, dict) else None
            check_single(single, allowed, problems, methods.get(mid) if mid is not None else None)
            if isinstance(single, dict) and "error" in single and isinstance(single["error"], dict):
                world.stats[str(single["error"].get("code"))] += 1
            elif isinstance(single, dict) and "result" in single:
                world.stats["result"] += 1
        if isinstance(obj, list) and not obj:
            problems.append("an empty batch answer")
    if ex.closed:
        if len(payload) <= MAX_MESSAGE:
            problems.append("the connection closed on a message within api.max_message_bytes")
        alive = exchange(world.d.socket, b"")
        if alive.closed:
            problems.append("the daemon stopped answering")
    assert not problems, f"{payload[:500]!r}\n" + "\n".join(problems)
    return answers


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def world(daemon_factory, tmp_path, request) -> Iterator[World]:  # type: ignore[no-untyped-def]
    """The fuzzed daemon; afterwards (when a fuzzer used it) the checks of ``finish``."""
    d = daemon_factory()
    box = tmp_path / "sandbox"
    box.mkdir()
    rng = np.random.default_rng(0)
    write_safetensors(box / "m.safetensors", {"w": rng.standard_normal((4, 4)).astype(np.float32)})
    write_safetensors(box / "m2.safetensors", {"w": rng.standard_normal((4, 4)).astype(np.float32)})
    write_safetensors(box / "wide.safetensors", {"w": rng.standard_normal((4, 8)).astype(np.float32)})
    write_onnx(box / "model.onnx")
    write_hf_dir(box / "hf")
    (box / "empty").mkdir()
    (box / "req.txt").write_text("numpy==2.0.0\n")
    os.mkfifo(box / "fifo")
    os.symlink(box / "loop", box / "loop")
    os.symlink(box / "gone", box / "dangling")
    (box / "odd name ☃.safetensors").write_bytes((box / "m.safetensors").read_bytes()[:-4] + b"\x01\x02\x03\x04")
    c = d.client()
    c.register(box / "m.safetensors", name="alpha", metrics={"acc": 0.9}, tags={"team": "risk"})
    c.register(box / "m2.safetensors", name="alpha", metrics={"acc": 0.95})
    c.register(box / "wide.safetensors", name="beta")
    c.register(box / "hf", name="hf")
    c.promote("alpha", "1.0.0", "production", "fuzz fixture")
    c.promote("alpha", "1.1.0", "production", "fuzz fixture")
    c.set_alias("alpha", "champion", "1.1.0")
    c.promote("beta", "1.0.0", "staging", "fuzz fixture")
    c.close()
    paths = [str(p) for p in sorted(box.iterdir())] + [
        str(d.data_dir), str(d.data_dir / "registry.db"), str(box / "hf" / "config.json"), "relative/nope", "", " ",
        str(box) + "/", "/nonexistent/x.safetensors", "~regd-no-such-user/x", "x" * 4096, str(box / ("y" * 300)),
    ]  # fmt: skip
    w = World(d=d, sandbox=box, paths=paths)
    yield w
    if w.sent:
        finish(w, request.node.name)


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ", re.MULTILINE)


def background_failures(log: str) -> list[str]:
    """Each 'background task ... failed' entry of a daemon log, with its traceback."""
    out = []
    for m in re.finditer(r"background task \S+ failed", log):
        end = LOG_LINE.search(log, m.end())
        out.append(log[m.start() : end.start() if end else len(log)])
    return out


def finish(world: World, name: str) -> None:
    """After a fuzz run: the daemon answers, its chain and bytes verify; its log shows no unexplained crash."""
    c = world.d.client()
    assert c.status()["pid"] == world.d.proc.pid
    assert c.call("audit.verify")["ok"]
    verify = c.call("versions.verify")
    assert verify["ok"], [i for i in verify["items"] if i["status"] not in ("ok", "pruned")]
    log = world.d.log_path.read_text(errors="replace")
    internal = log.count("internal error handling request")
    assert internal <= sum(world.known_sent.values()), f"{internal} internal errors logged:\n{log[-4000:]}"
    failures = background_failures(log)
    assert not failures, failures[0]
    report = os.environ.get("REGD_FUZZ_REPORT")
    if report:
        lat = sorted(world.latencies)
        with open(report, "a") as f:
            f.write(json.dumps({
                "test": name, "cases": world.sent, "answers": dict(world.stats), "known_bugs": dict(world.known_sent),
                "p50_ms": lat[len(lat) // 2] * 1000 if lat else None,
                "p99_ms": lat[int(len(lat) * 0.99)] * 1000 if lat else None, "max_ms": lat[-1] * 1000 if lat else None,
            }) + "\n")  # fmt: skip


# ----------------------------------------------------------------------------- the fuzzers


METHOD_NAMES = sorted(METHODS)


@st.composite
def schema_requests(draw: st.DrawFn, world: World) -> dict[str, Any]:
    method = draw(st.sampled_from(METHOD_NAMES))
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": draw(st.integers(0, 2**53) | st.text(max_size=10)), "method": method}
    params = draw(params_for(world, method))
    if params or draw(st.booleans()):
        msg["params"] = params
    return msg


@FUZZ
@given(data=st.data())
def test_schema_generated_requests_get_contract_answers(world, data):
    msg = data.draw(schema_requests(world))
    send_and_check(world, encode(msg, data.draw(st.booleans())), msg)


@FUZZ
@given(data=st.data())
def test_params_beyond_their_schema_are_refused_with_contract_codes(world, data):
    msg = data.draw(schema_requests(world))
    msg["params"] = data.draw(mutated(msg.get("params") or {}))
    if msg["params"] is None and data.draw(st.booleans()):
        del msg["params"]
    send_and_check(world, encode(msg), msg)


ENVELOPE_KEYS = {
    "jsonrpc": st.sampled_from(["2.0", "1.0", "2", 2.0, None, ""]),
    "method": st.sampled_from(METHOD_NAMES) | st.sampled_from(["", "rpc.", "nope", "daemon.status ", "DAEMON.STATUS",
                                                              "versions", "a" * 10000, "\x00", "\ud800"]) | json_values(),
    "params": st.just({}) | st.just([]) | json_values(),
    "id": st.integers() | st.text(max_size=10) | st.sampled_from(["\udfff", "a\udc80"]) | st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
    | st.just(10**30) | st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
}  # fmt: skip


@st.composite
def envelopes(draw: st.DrawFn) -> Any:
    keys = draw(st.sets(st.sampled_from(sorted(ENVELOPE_KEYS))))
    msg = {k: draw(ENVELOPE_KEYS[k]) for k in sorted(keys)}
    if draw(st.integers(0, 9)) == 0:
        msg[draw(st.text(max_size=8))] = draw(json_values())
    return msg


@st.composite
def batches(draw: st.DrawFn, world: World) -> list[Any]:
    good = schema_requests(world)
    notification = good.map(lambda m: {k: v for k, v in m.items() if k != "id"})
    junk = st.sampled_from([1, "x", None, [], {}, [1], True])
    item = good | envelopes() | notification | junk | good.flatmap(lambda m: mutated(m.get("params") or {}).map(lambda p: {**m, "params": p}))
    return draw(st.lists(item, max_size=12) | st.lists(st.lists(item, max_size=2), max_size=2))


@FUZZ
@given(data=st.data())
def test_hostile_envelopes_and_mixed_batches_get_one_valid_answer_each(world, data):
    msg = data.draw(envelopes() | batches(world))
    answers = send_and_check(world, encode(msg, data.draw(st.booleans())), msg)
    answers = [a for a in answers if not (isinstance(a, dict) and "method" in a)]  # events once subscribed
    if isinstance(msg, list):
        # one batch answer (or none when every member was a notification), never one line per member
        assert len(answers) <= 1
        if answers and msg:
            answered = answers[0] if isinstance(answers[0], list) else [answers[0]]
            assert len(answered) <= len(msg)
    elif isinstance(msg, dict) and isinstance(msg.get("id"), int) and not isinstance(msg.get("id"), bool) and not bugs_in(msg):
        replies = [a for a in answers if isinstance(a, dict) and "id" in a]
        assert len(replies) == 1 and replies[0]["id"] in (msg["id"], None), answers


def raw_messages(world: World) -> st.SearchStrategy[bytes]:
    valid = schema_requests(world).map(encode)

    @st.composite
    def damaged(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(valid))
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.sampled_from(["flip", "cut", "insert", "dup"]))
            at = draw(st.integers(0, max(0, len(data) - 1)))
            if op == "flip" and data:
                data[at] = draw(st.integers(0, 255))
            elif op == "cut":
                del data[at:]
            elif op == "insert":
                data[at:at] = draw(st.sampled_from([b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\\u0000", b"\\ud800",
                                                    b'"', b"\\", b"{", b"]", b",", b"NaN", b"1e999", b"\r", b"\n"]))  # fmt: skip
            elif op == "dup":
                data[at:at] = data[at : at + draw(st.integers(1, 50))]
        return bytes(data)

    bombs = st.sampled_from([
        b"[" * 100_000, b"{" * 100_000, b'{"a":' * 50_000, b"[" * 5000 + b"]" * 5000, b"1" * 5000, b"-" + b"9" * 4400,
        b'"' + b"\\u0000" * 10_000 + b'"', b"\xef\xbb\xbf{}", b"\xff\xfe{\x00}\x00", b"\x00" * 64, b"{}", b"[]", b"null",
        b'"just a string"', b"1e999", b"NaN", b" \t ", b"\r",
        b'{"jsonrpc":"2.0","id":1,"method":"daemon.status","params":' + b"[" * 3000 + b"]" * 3000 + b"}",
        b'{"jsonrpc":"2.0","id":1,"method":"models.list","params":{"limit":1e999}}',
        b'{"jsonrpc":"2.0","id":1,"method":"models.list","params":{"limit":' + b"9" * 4000 + b"}}",
        b'{"jsonrpc":"2.0","id":1,"id":2,"method":"daemon.status"}',
    ])  # fmt: skip
    return st.one_of(damaged(), st.binary(max_size=300), bombs)


@FUZZ
@given(data=st.data())
def test_raw_bytes_invalid_utf8_nul_and_nesting_bombs_never_hang_or_kill_the_daemon(world, data):
    payload = data.draw(raw_messages(world))
    try:
        decoded = json.loads(payload)
    except (ValueError, RecursionError):
        decoded = None
    send_and_check(world, payload, decoded)


def test_oversize_messages_are_refused_and_the_daemon_lives_on(world):
    """Over ``api.max_message_bytes``: -32600, the connection closed (no next boundary to trust)."""
    for extra in (1, 1000, 3 * MAX_MESSAGE):
        payload = b'{"jsonrpc":"2.0","id":1,"method":"daemon.status","params":{"x":"' + b"a" * (MAX_MESSAGE + extra) + b'"}}'
        answers = send_and_check(world, payload, None)
        assert [a["error"]["code"] for a in answers] == [-32600]
    # and a message just inside the limit is still read (and refused only for its params)
    inside = b'{"jsonrpc":"2.0","id":1,"method":"daemon.status","params":{"x":"' + b"a" * (MAX_MESSAGE - 100) + b'"}}'
    assert [a["error"]["code"] for a in send_and_check(world, inside, None)] == [-32602]


# ----------------------------------------------------------------------------- the bugs the fuzzers found


def _answer(world: World, msg: dict[str, Any]) -> dict[str, Any]:
    (line,) = exchange(world.d.socket, encode(msg)).lines
    return _strict(line.decode())


# a NUL byte in a path param raised ValueError ('embedded null byte') in os.stat/Path.resolve: -32603
@pytest.mark.parametrize("method,params", [
    ("versions.register", {"path": "/tmp/a\x00b"}),
    ("watch.add", {"path": "/tmp/a\x00b"}),
    ("watch.remove", {"path": "/tmp/a\x00b"}),
    ("versions.diff", {"a": {"name": "alpha"}, "b_path": "/tmp/a\x00b"}),
])  # fmt: skip
def test_bug_a_nul_byte_in_a_path_is_invalid_params(world, method, params):
    reply = _answer(world, {"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    assert reply["error"]["code"] == -32602, reply
    assert "NUL" in reply["error"]["data"][0]["msg"], reply


# gc.plan/gc.run with older_than_days > ~1.07e8 (or Infinity) made a cutoff beyond SQLite's 64-bit INTEGER
# (or int(inf)): -32603 OverflowError. Now bounded in the protocol (a century) and refused -32602.
@pytest.mark.parametrize("days", [1e7, 1e9, 1e300, 36_501, math.inf])
def test_bug_gc_older_than_a_huge_number_of_days_is_not_an_internal_error(world, days):
    reply = _answer(world, {"jsonrpc": "2.0", "id": 1, "method": "gc.plan", "params": {"older_than_days": days}})
    if math.isinf(days):  # Infinity is not JSON at all
        assert reply["error"]["code"] == -32700, reply
        return
    assert reply["error"]["code"] == -32602, reply
    assert reply["error"]["data"][0]["loc"] == ["older_than_days"], reply
    assert "36500" in reply["error"]["data"][0]["msg"], reply
    assert "result" in _answer(world, {"jsonrpc": "2.0", "id": 2, "method": "gc.plan", "params": {"older_than_days": 36_500}})


# the parser accepted the non-JSON literals NaN/Infinity (Python's json.loads default) and echoed them back
# as the id, so the answer was not JSON to jq, JS or Go clients
@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_bug_a_non_finite_id_is_answered_in_strict_json(world, literal):
    ex = exchange(world.d.socket, b'{"jsonrpc":"2.0","id":' + literal + b',"method":"daemon.status"}')
    (line,) = ex.lines
    reply = _strict(line.decode())  # raises on NaN / Infinity
    assert reply["error"]["code"] in (-32700, -32600), reply


# a lone surrogate (\ud800) in 'method' or a string 'id' was echoed into the answer, which then failed to
# encode as UTF-8 (Connection.send): no answer, connection dropped
@pytest.mark.parametrize("msg", [
    b'{"jsonrpc":"2.0","id":1,"method":"\\ud800"}',
    b'{"jsonrpc":"2.0","id":"\\ud800","method":"daemon.status"}',
])  # fmt: skip
def test_bug_a_lone_surrogate_in_method_or_id_still_gets_an_answer(world, msg):
    ex = exchange(world.d.socket, msg)
    assert not ex.closed and len(ex.lines) == 1, ex
    assert _strict(ex.lines[0].decode())["error"]["code"] in (-32700, -32600, -32601)


# registering (or diffing against) a directory that holds a symlink loop raised RuntimeError('Symlink loop')
# from Path.resolve in sources.directory_files: -32603. The loop is skipped, like a link leaving the directory.
@pytest.mark.parametrize("method", ["versions.register", "versions.diff"])
def test_bug_a_symlink_loop_inside_a_directory_is_not_an_internal_error(world, tmp_path, method):
    target = tmp_path / "withloop"
    write_hf_dir(target)
    os.symlink(target / "loop", target / "loop")
    params = {"path": str(target)} if method == "versions.register" else {"a": {"name": "hf"}, "b_path": str(target)}
    reply = _answer(world, {"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    assert "result" in reply, reply  # the loop is skipped, as a symlink leaving the directory is
    if method == "versions.register":
        files = [f["path"] for f in reply["result"]["version"]["artifact"]["files"]]
        assert "loop" not in files and "config.json" in files, files


# watch.add/watch.remove on a path that cannot be resolved (~unknown-user, a symlink loop, a name over 255
# bytes) raised RuntimeError/OSError in watches._check_root (expanduser, resolve, exists): -32603, not -32602
@pytest.mark.parametrize(("method", "path"), [
    ("watch.add", "~regd-no-such-user/runs"), ("watch.remove", "~regd-no-such-user/runs"),
    ("watch.add", "loop"), ("watch.remove", "loop"), ("watch.add", "long"),
])  # fmt: skip
def test_bug_an_unresolvable_watch_path_is_invalid_params(world, method, path):
    if path == "loop":
        path = str(world.sandbox / "loop" / "runs")
    elif path == "long":
        path = str(world.sandbox / ("y" * 300))
    reply = _answer(world, {"jsonrpc": "2.0", "id": 1, "method": method, "params": {"path": path}})
    assert reply["error"]["code"] == -32602, reply
    assert reply["error"]["message"].startswith("cannot "), reply


# the version.rolled_back audit row has versions in from/to, and Effects._after called Stage(row.to) on it:
# ValueError, the effects task died, so no on_change hook or webhook ever ran for a rollback
def test_bug_a_rollback_runs_the_production_on_change_hook(daemon_factory, tmp_path):
    out, deploy = tmp_path / "hooks.log", tmp_path / "deploy"
    d = daemon_factory(f'deploy_dir = "{deploy}"\n[policy."*".production]\n'
                       f'on_change = "echo $REGD_EVENT $REGD_VERSION $REGD_STAGE >> {out}"\n')  # fmt: skip
    c = d.client()
    rng = np.random.default_rng(1)
    for i in range(2):
        c.register(write_safetensors(tmp_path / f"m{i}.safetensors", {"w": rng.standard_normal(4).astype(np.float32)}), name="m")
        c.promote("m", f"1.{i}.0", "production", "ship")
    c.rollback("m", "bad")
    from tests.waiting import wait_for

    wait_for(lambda: out.exists() and "version.rolled_back 1.0.0 production" in out.read_text(), timeout=5,
             what="the production hook to run for the rollback")  # fmt: skip
    restored = c.version("m", "1.0.0").artifact.stored_path
    wait_for(lambda: os.path.realpath(deploy / "m" / "production") == os.path.realpath(restored), timeout=5,
             what="the production pointer to move back to 1.0.0")  # fmt: skip
    assert not background_failures(d.log_path.read_text(errors="replace"))
    assert "effects of audit row" not in d.log_path.read_text(errors="replace")
