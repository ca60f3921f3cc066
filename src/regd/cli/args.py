"""Parsing what people type: version references and ``key=value`` pairs."""

from __future__ import annotations

import argparse
import json
import math
import re
from typing import Any

from regd.client import Client

_REF = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,127})(?:(?P<sep>[:@])(?P<ref>.+))?$")


def parse_ref(text: str) -> tuple[str, str]:
    """``fraud`` -> (fraud, latest); ``fraud:1.2.0``, ``fraud:production``, ``fraud@champion`` -> (fraud, ref)."""
    m = _REF.match(text)
    if not m:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a reference: NAME, NAME:1.2.0, NAME:latest, NAME:production or NAME@alias"
        )
    if m["sep"] is None:
        return m["name"], "latest"
    return m["name"], ("@" + m["ref"]) if m["sep"] == "@" else m["ref"]


def key_value(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE")
    key, value = text.split("=", 1)
    if not key:
        raise argparse.ArgumentTypeError(f"{text!r}: the key is empty")
    return key, value


def metric(text: str) -> tuple[str, float]:
    key, value = key_value(text)
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a metric's value must be a number") from None
    if not math.isfinite(number):  # JSON has no NaN or infinity, and neither does a guard's comparison
        raise argparse.ArgumentTypeError(f"{text!r}: a metric's value must be a finite number")
    return key, number


def days(text: str) -> float:
    """A number of days for --older-than: finite, from 0 to 100 years (what the API accepts)."""
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of days") from None
    if not 0 <= number <= 36500:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of days from 0 to 36500")
    return number


def param(text: str) -> tuple[str, Any]:
    """``lr=0.001`` -> 0.001, ``layers=[64,64]`` -> a list, anything else a string."""
    key, value = key_value(text)
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def client(args: argparse.Namespace) -> Client:
    return Client(getattr(args, "socket", None), config=getattr(args, "config", None))
