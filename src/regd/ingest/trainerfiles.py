"""Read the metadata training tools already write, and the JSON and YAML under every metadata source.

    all_results.json, eval_results.json   Hugging Face Trainer: every number -> a metric, names kept
                                          (``eval_accuracy``, ``train_loss``, ``epoch``)
    trainer_state.json                    Hugging Face Trainer: ``best_metric`` (named after
                                          ``metric_for_best_model`` when the file carries it), ``epoch`` and
                                          ``global_step`` -> metrics
    hparams.yaml                          Lightning: every key -> a param
    metrics.json                          numbers -> metrics; nested objects flattened (``train.loss``)
    params.json                           every key -> a param

``epoch`` and ``global_step`` are metrics, not params, on purpose: params feed the run identity, and the
checkpoints of one run should share it. Non-numbers in the Trainer's result files are skipped quietly
(they are not regd's to judge); everything else is handed on for validation, which names what is wrong.
"""

from __future__ import annotations

import json
import math
from typing import Any

import yaml

from regd.ingest.boundedio import MAX_YAML_FLOW_DEPTH, yaml_flow_depth_ok


class SourceError(ValueError):
    """A metadata file that cannot be parsed at all; the message says where."""


def load_json(data: bytes) -> Any:
    """Parse JSON; ``NaN`` and ``Infinity`` load as floats so that validation can name the field."""
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise SourceError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise SourceError("nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:  # bad encoding, an integer of 5000 digits
        raise SourceError(f"invalid JSON: {exc}") from None


class _HparamsLoader(yaml.SafeLoader):
    """The safe loader plus one tag: Lightning saves tuple hparams (``betas: !!python/tuple [0.9, 0.99]``).

    A tuple is built from plain YAML as a list, executes nothing, and refusing it would refuse most
    Lightning runs with an optimizer; every other ``python/*`` tag stays an error.
    """


def _tuple_as_list(loader: yaml.SafeLoader, node: yaml.Node) -> list[Any]:
    assert isinstance(node, yaml.SequenceNode)
    return loader.construct_sequence(node, deep=True)


_HparamsLoader.add_constructor("tag:yaml.org,2002:python/tuple", _tuple_as_list)


def load_yaml(data: bytes, *, allow_tuples: bool = False) -> Any:
    """Parse YAML with the safe loader; python object tags and syntax errors raise ``SourceError``."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"not UTF-8 text (bad byte at offset {exc.start})") from None
    if not yaml_flow_depth_ok(text):
        raise SourceError(f"[ ] or {{ }} nested more than {MAX_YAML_FLOW_DEPTH} deep")
    try:
        if allow_tuples:
            # A SafeLoader subclass: the same guarantees as yaml.safe_load, one extra plain-data tag.
            return yaml.load(text, Loader=_HparamsLoader)  # noqa: S506
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise SourceError(f"invalid YAML{where}: {exc.problem or exc.context or 'syntax error'}") from None
    except yaml.YAMLError as exc:
        raise SourceError(f"invalid YAML: {exc}") from None
    except RecursionError:
        raise SourceError("nested too deeply") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _object(doc: Any, what: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise SourceError(f"expected {what}, found {type(doc).__name__}")
    return doc


def results_fields(doc: Any) -> dict[str, Any]:
    """``all_results.json`` / ``eval_results.json``: the numbers, under their own names."""
    results = _object(doc, "a JSON object")
    return {"metrics": {str(key): value for key, value in results.items() if _is_number(value)}}


def trainer_state_fields(doc: Any) -> dict[str, Any]:
    """``trainer_state.json``: the best metric, the epoch and the global step."""
    state = _object(doc, "a JSON object")
    metrics: dict[str, Any] = {}
    best = state.get("best_metric")
    if _is_number(best):
        name = state.get("metric_for_best_model")
        if isinstance(name, str) and name:
            # The Trainer compares `eval_<name>` unless the name already says so.
            name = name if name.startswith("eval_") else f"eval_{name}"
        else:
            name = "best_metric"
        metrics[name] = best
    for key in ("epoch", "global_step"):
        if _is_number(state.get(key)):
            metrics[key] = state[key]
    return {"metrics": metrics}


def hparams_fields(doc: Any) -> dict[str, Any]:
    """Lightning ``hparams.yaml``: every top-level key is a param (empty file: none)."""
    if doc is None:
        return {}
    hparams = _object(doc, "a YAML mapping")
    return {"params": {str(key): value for key, value in hparams.items()}}


def metrics_file_fields(doc: Any) -> dict[str, Any]:
    """``metrics.json``: numbers as metrics, nested objects flattened with dots (DVC's ``train.loss``)."""
    flat: dict[str, Any] = {}
    _flatten(_object(doc, "a JSON object"), "", flat, depth=0)
    return {"metrics": flat}


def _flatten(obj: dict[Any, Any], prefix: str, out: dict[str, Any], depth: int) -> None:
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and depth < 4:
            _flatten(value, f"{name}.", out, depth + 1)
        else:
            out[name] = value


def params_file_fields(doc: Any) -> dict[str, Any]:
    """``params.json``: every top-level key is a param."""
    return {"params": dict(_object(doc, "a JSON object"))}


def is_finite_number(value: Any) -> bool:
    """Tell a real number (not a bool, not NaN or infinite) from everything else."""
    if not _is_number(value):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False
