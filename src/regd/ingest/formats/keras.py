"""Read a Keras ``.keras`` archive's config (inputs, outputs, layers) and detect legacy HDF5 files.

The weights (``model.weights.h5``) are HDF5, which needs h5py to walk; only the JSON members are read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from regd.domain import Signature, TensorSpec
from regd.ingest.formats.info import FormatInfo
from regd.ingest.formats.limits import MAX_JSON_FILE, BoundedFile, FormatError, bounded, load_json
from regd.ingest.formats.zips import open_zip, read_member

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_UNIT_LAYERS = {"Dense", "EinsumDense"}
_MIXED = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


def read_keras(path: Path) -> FormatInfo:
    """Read a ``.keras`` zip: config.json for the signature, metadata.json for the version."""
    info = FormatInfo(format="keras")
    with BoundedFile.open(path) as f:
        try:
            with open_zip(f) as archive:
                names = set(archive.namelist())
                if "config.json" not in names:
                    raise FormatError("keras archive has no config.json")
                config = load_json(read_member(archive, "config.json", MAX_JSON_FILE), "keras config.json")
                if "metadata.json" in names:
                    meta = load_json(read_member(archive, "metadata.json", 1024 * 1024), "keras metadata.json")
                    if isinstance(meta, dict):
                        for key in ("keras_version", "date_saved"):
                            if key in meta:
                                info.metadata[key] = bounded(meta[key])
                info.metadata["weights_file"] = "model.weights.h5" if "model.weights.h5" in names else None
        except FormatError as exc:
            info.format_error(str(exc))
            return info
    try:
        describe_config(config, info)
    except (FormatError, TypeError, ValueError, KeyError, AttributeError) as exc:
        info.format_error(f"keras config.json: {exc}")
    return info


def read_keras_h5(path: Path) -> FormatInfo:
    """Recognise a legacy Keras HDF5 file; its config lives in HDF5 attributes this reader does not parse."""
    info = FormatInfo(format="keras-h5")
    info.metadata["container"] = "hdf5"
    return info


def describe_config(config: Any, info: FormatInfo) -> None:
    """Fill class name, layer count and the input/output signature from a Keras model config."""
    if not isinstance(config, dict):
        raise FormatError("keras config.json is not an object")
    inner = config.get("config") if isinstance(config.get("config"), dict) else {}
    layers = [layer for layer in inner.get("layers") or [] if isinstance(layer, dict)]
    info.metadata["class_name"] = bounded(config.get("class_name"))
    info.metadata["model_name"] = bounded(inner.get("name"))
    info.metadata["layer_count"] = len(layers)
    by_name = {_layer_name(layer): layer for layer in layers}
    if isinstance(inner.get("input_layers"), list):
        inputs = [_input_spec(by_name.get(ref[0]), ref[0]) for ref in _refs(inner["input_layers"])]
        outputs = [_output_spec(by_name.get(ref[0]), ref[0], None) for ref in _refs(inner.get("output_layers"))]
    else:
        inputs, outputs = _sequential(config, inner, layers)
    if inputs or outputs:
        info.signature = Signature(inputs=inputs, outputs=outputs, extra={"class_name": info.metadata["class_name"]})


def _sequential(
    config: dict[str, Any], inner: dict[str, Any], layers: list[dict[str, Any]]
) -> tuple[list[TensorSpec], list[TensorSpec]]:
    body = [layer for layer in layers if layer.get("class_name") != "InputLayer"]
    first = layers[0] if layers else None
    if first is not None and first.get("class_name") == "InputLayer":
        inputs = [_input_spec(first, _layer_name(first))]
    else:
        shape = _shape(inner.get("build_input_shape") or (config.get("build_config") or {}).get("input_shape"))
        inputs = [TensorSpec(name="input", dtype=_dtype(inner.get("dtype")), shape=shape)] if shape else []
    previous = inputs[0].shape if inputs else None
    outputs = [_output_spec(body[-1], _layer_name(body[-1]), previous if len(body) == 1 else None)] if body else []
    return inputs, outputs


def _refs(value: Any) -> list[list[Any]]:
    """Normalise Keras' layer references: ``[name, node, tensor]`` or a list of them."""
    if not isinstance(value, list):
        return []
    if value and isinstance(value[0], str):
        return [value]
    return [ref for ref in value if isinstance(ref, list) and ref and isinstance(ref[0], str)]


def _layer_name(layer: dict[str, Any]) -> str:
    cfg = layer.get("config") if isinstance(layer.get("config"), dict) else {}
    return str(layer.get("name") or cfg.get("name") or "")


def _input_spec(layer: dict[str, Any] | None, name: str) -> TensorSpec:
    cfg = (layer or {}).get("config") or {}
    shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
    if isinstance(shape, dict):  # tf.keras 2 serialised TensorShape
        shape = shape.get("items")
    return TensorSpec(name=name, dtype=_dtype(cfg.get("dtype")), shape=_shape(shape))


def _output_spec(layer: dict[str, Any] | None, name: str, fallback_input: list[Any] | None) -> TensorSpec:
    cfg = (layer or {}).get("config") or {}
    shape: list[int | str | None] = []
    units = cfg.get("units")
    if (layer or {}).get("class_name") in _UNIT_LAYERS and isinstance(units, int):
        built = _shape(((layer or {}).get("build_config") or {}).get("input_shape")) or fallback_input or []
        shape = [*built[:-1], units] if built else [None, units]
    return TensorSpec(name=name, dtype=_dtype(cfg.get("dtype")), shape=shape)


def _dtype(value: Any) -> str:
    """Name a layer's dtype: a plain string or a DTypePolicy config."""
    if isinstance(value, dict):
        value = (value.get("config") or {}).get("name")
    if not isinstance(value, str):
        return "float32"
    return _MIXED.get(value, value)


def _shape(value: Any) -> list[int | str | None]:
    if not isinstance(value, list):
        return []
    return [d if d is None or (isinstance(d, int) and not isinstance(d, bool)) else str(d) for d in value[:64]]
