"""Find the tensors in a symbolically walked PyTorch pickle: names, dtypes, shapes, storage spans."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from regd.ingest.formats.limits import MAX_DEPTH, MAX_TENSORS, FormatError
from regd.ingest.formats.picklevm import Call, Global, PersistentRef

# torch.<X>Storage -> (dtype, itemsize)
STORAGE_DTYPES: dict[str, tuple[str, int]] = {
    "DoubleStorage": ("float64", 8), "FloatStorage": ("float32", 4), "HalfStorage": ("float16", 2),
    "BFloat16Storage": ("bfloat16", 2), "LongStorage": ("int64", 8), "IntStorage": ("int32", 4),
    "ShortStorage": ("int16", 2), "CharStorage": ("int8", 1), "ByteStorage": ("uint8", 1),
    "BoolStorage": ("bool", 1), "ComplexDoubleStorage": ("complex128", 16), "ComplexFloatStorage": ("complex64", 8),
    "QUInt8Storage": ("quint8", 1), "QInt8Storage": ("qint8", 1), "QInt32Storage": ("qint32", 4),
    "QUInt4x2Storage": ("quint4x2", 1), "QUInt2x4Storage": ("quint2x4", 1), "UntypedStorage": ("uint8", 1),
}  # fmt: skip
# torch.<dtype> globals (as _rebuild_tensor_v3 names them) -> (canonical name, itemsize)
TORCH_DTYPES: dict[str, tuple[str, int]] = {
    "float32": ("float32", 4), "float": ("float32", 4), "float64": ("float64", 8), "double": ("float64", 8),
    "float16": ("float16", 2), "half": ("float16", 2), "bfloat16": ("bfloat16", 2), "int8": ("int8", 1),
    "uint8": ("uint8", 1), "int16": ("int16", 2), "short": ("int16", 2), "int32": ("int32", 4), "int": ("int32", 4),
    "int64": ("int64", 8), "long": ("int64", 8), "bool": ("bool", 1), "complex32": ("complex32", 4),
    "chalf": ("complex32", 4), "complex64": ("complex64", 8), "cfloat": ("complex64", 8),
    "complex128": ("complex128", 16), "cdouble": ("complex128", 16), "uint16": ("uint16", 2),
    "uint32": ("uint32", 4), "uint64": ("uint64", 8), "float8_e4m3fn": ("float8_e4m3fn", 1),
    "float8_e5m2": ("float8_e5m2", 1), "float8_e4m3fnuz": ("float8_e4m3fnuz", 1),
    "float8_e5m2fnuz": ("float8_e5m2fnuz", 1), "float8_e8m0fnu": ("float8_e8m0fnu", 1),
    "float4_e2m1fn_x2": ("float4_e2m1fn_x2", 1), "quint8": ("quint8", 1), "qint8": ("qint8", 1),
    "qint32": ("qint32", 4),
}  # fmt: skip
_REBUILD_TENSOR = {"torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3"}
_REBUILD_PARAMETER = {"torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state"}
# nn.Module attributes that hold the state-dict entries: dropped from names so a pickled module
# reads like its state_dict ("fc.weight", not "_modules.fc._parameters.weight").
_MODULE_SLOTS = {"_parameters", "_buffers", "_modules"}


@dataclass
class TorchTensor:
    """A tensor as its pickle describes it."""

    name: str
    key: str
    """The storage key: ``<archive>/data/<key>`` in a zip, the order of storages in a legacy file."""
    dtype: str
    itemsize: int
    storage_type: str
    storage_numel: int | None
    """Elements of the storage type (bytes for UntypedStorage)."""
    offset: int
    """Storage offset in elements of the tensor's dtype."""
    shape: list[int]
    stride: list[int]

    @property
    def span(self) -> int:
        """Elements of storage the tensor reaches, from its offset (its byte range / itemsize)."""
        if any(d == 0 for d in self.shape):
            return 0
        return 1 + sum((d - 1) * s for d, s in zip(self.shape, self.stride, strict=False))


def find_tensors(root: Any) -> list[TorchTensor]:
    """Walk dicts, OrderedDicts, lists and object states from ``root`` and collect every tensor."""
    out: list[TorchTensor] = []
    _walk(root, "", out, 0, set())
    return out


def _walk(value: Any, name: str, out: list[TorchTensor], depth: int, seen: set[int]) -> None:
    if depth > MAX_DEPTH or len(out) >= MAX_TENSORS:
        return
    tensor = as_tensor(value, name)
    if tensor is not None:
        out.append(tensor)
        return
    if id(value) in seen:
        return
    if isinstance(value, (dict, list, tuple, Call)):
        seen.add(id(value))
    for key, item in _children(value):
        if isinstance(key, str) and key in _MODULE_SLOTS:
            child = name
        else:
            child = f"{name}.{key}" if name else str(key)
        _walk(item, child, out, depth + 1, seen)


def _children(value: Any) -> list[tuple[Any, Any]]:
    if isinstance(value, dict):
        return [(k, v) for k, v in value.items() if isinstance(k, (str, int))]
    if isinstance(value, (list, tuple)):
        return list(enumerate(value))
    if isinstance(value, Call):
        children = [(k, v) for k, v in value.items.items() if isinstance(k, (str, int))]
        children += list(enumerate(value.appended))
        state = value.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            state = state[0]  # (dict state, slot state)
        if isinstance(state, dict):
            children += [(k, v) for k, v in state.items() if isinstance(k, str) and not k.startswith("_metadata")]
        return children
    return []


def _qualname(value: Any) -> str:
    return value.qualname if isinstance(value, Global) else ""


def as_tensor(value: Any, name: str) -> TorchTensor | None:
    """Recognise a rebuild call (tensor, parameter, subclass) and describe the tensor it makes."""
    if not isinstance(value, Call) or not isinstance(value.args, tuple):
        return None
    func, args = _qualname(value.func), value.args
    if func in _REBUILD_PARAMETER and args:
        return as_tensor(args[0], name)
    if func == "torch._tensor._rebuild_from_type_v2" and len(args) >= 3 and isinstance(args[2], tuple):
        return as_tensor(Call(args[0], args[2]), name)
    if func not in _REBUILD_TENSOR or len(args) < 4:
        return None
    storage, offset, shape, stride = (_unwrap_size(a) for a in args[:4])
    if not isinstance(storage, PersistentRef):
        raise FormatError(f"tensor {name!r}: storage is not a persistent reference")
    pid = storage.pid
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], Global)):
        raise FormatError(f"tensor {name!r}: unrecognised storage id")
    storage_type = pid[1].name
    key = str(pid[2])
    if not _int_list(shape) or not _int_list(stride) or len(shape) != len(stride) or not _nonneg_int(offset):
        raise FormatError(f"tensor {name!r}: bad size, stride or offset")
    storage_numel = pid[4] if _nonneg_int(pid[4]) else None
    view = pid[5] if len(pid) > 5 else None
    if isinstance(view, tuple) and len(view) >= 2 and _nonneg_int(view[1]):
        offset += view[1]  # legacy storage views: (view key, offset into the root, size)
    if func == "torch._utils._rebuild_tensor_v3" and len(args) >= 7 and _qualname(args[6]).startswith("torch."):
        dtype, itemsize = TORCH_DTYPES.get(args[6].name, (args[6].name, 0))
    else:
        dtype, itemsize = STORAGE_DTYPES.get(storage_type, (storage_type, 0))
    return TorchTensor(name, key, dtype, itemsize, storage_type, storage_numel, offset, list(shape), list(stride))


def _unwrap_size(value: Any) -> Any:
    """Turn a pickled ``torch.Size((...))`` into its tuple."""
    if (
        isinstance(value, Call)
        and _qualname(value.func) == "torch.Size"
        and isinstance(value.args, tuple)
        and value.args
    ):
        return value.args[0]
    return value


def _nonneg_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _int_list(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) <= 64 and all(_nonneg_int(v) for v in value)


def storage_itemsize(storage_type: str) -> int:
    """Bytes per element of a ``torch.<X>Storage`` class (1 for UntypedStorage, 0 when unknown)."""
    return STORAGE_DTYPES.get(storage_type, ("", 0))[1]
