"""Read PyTorch checkpoints: the zip layout of ``torch.save`` and the legacy concatenated pickles.

Zip layout: ``<archive>/data.pkl`` (a pickle whose persistent ids name storages),
``<archive>/data/<key>`` (each storage's raw bytes, stored uncompressed and 64-byte aligned),
``<archive>/version``, ``<archive>/byteorder``. Legacy layout: pickles of the magic number, the
protocol version, sys_info, the object and the sorted storage keys, then each storage as an 8-byte
element count followed by its bytes.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

from regd.domain import TensorFingerprint
from regd.ingest.formats.info import FormatInfo, add_counts, tensor_signature
from regd.ingest.formats.limits import MAX_PICKLE_BYTES, MAX_TENSORS, BoundedFile, FormatError
from regd.ingest.formats.pickles import apply_scan, classify, scan_pickle
from regd.ingest.formats.picklevm import Machine
from regd.ingest.formats.torchstate import TorchTensor, find_tensors, storage_itemsize
from regd.ingest.formats.zips import data_offset, is_zip, member_stream, open_zip, read_member

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def read_pytorch(path: Path) -> FormatInfo:
    """Read a PyTorch checkpoint's tensors and scan its pickles."""
    info = FormatInfo(format="pytorch")
    with BoundedFile.open(path) as f:
        head = f.read(4)
        f.seek(0)
        try:
            if is_zip(head):
                _read_zip(f, info)
            elif head[:1] == b"\x80":
                _read_legacy(f, info)
            else:
                raise FormatError("pytorch: neither a zip archive nor a pickle")
        except FormatError as exc:
            info.format_error(str(exc))
    info.signature = tensor_signature(info.tensors)
    add_counts(info)
    return info


def find_data_pkl(names: list[str]) -> str | None:
    """Return the ``<archive>/data.pkl`` member of a torch zip, if there is one."""
    candidates = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if not candidates and "data.pkl" in names:
        return "data.pkl"
    return sorted(candidates)[0] if candidates else None


def _read_zip(f: BoundedFile, info: FormatInfo) -> None:
    with open_zip(f) as archive:
        names = archive.namelist()
        pkl = find_data_pkl(names)
        if pkl is None:
            raise FormatError("pytorch zip has no <archive>/data.pkl")
        prefix = pkl[: -len("data.pkl")]
        meta = info.metadata
        meta["archive"] = prefix.rstrip("/")
        for small in ("version", ".data/version", "byteorder"):
            if prefix + small in names:
                meta[small.rsplit("/", 1)[-1]] = _small_text(archive, prefix + small)
        torchscript = any(n.startswith(prefix + "code/") for n in names)
        if torchscript:
            meta["torchscript"] = True
        pkl_info = archive.getinfo(pkl)
        scan = scan_pickle(member_stream(f, archive, pkl_info), min(pkl_info.file_size, MAX_PICKLE_BYTES))
        if torchscript:
            # TorchScript archives name their compiled classes __torch__.*; torch.jit.load resolves
            # them from the archive's own code, not by importing Python modules.
            scan.unsafe = [q for q in scan.unsafe if not q.startswith("__torch__.")]
            scan.dangerous = [q for q in scan.dangerous if not q.startswith("__torch__.")]
        apply_scan(info, scan, "data.pkl")
        if not scan.complete:
            return
        tensors = find_tensors(scan.value)
        info.tensors = [_locate_in_zip(f, archive, prefix, t) for t in tensors]


def _small_text(archive: zipfile.ZipFile, name: str) -> str:
    return read_member(archive, name, 256).decode("utf-8", errors="replace").strip()


def _locate_in_zip(f: BoundedFile, archive: zipfile.ZipFile, prefix: str, t: TorchTensor) -> TensorFingerprint:
    out = TensorFingerprint(name=t.name, dtype=t.dtype, shape=list(t.shape))
    member = f"{prefix}data/{t.key}"
    try:
        entry = archive.getinfo(member)
    except KeyError:
        raise FormatError(f"tensor {t.name!r}: storage {member!r} missing from the archive") from None
    if not t.itemsize:
        return out  # a dtype this reader does not know the size of: no byte range
    start_byte = t.offset * t.itemsize
    nbytes = t.span * t.itemsize
    if start_byte + nbytes > entry.file_size:
        raise FormatError(
            f"tensor {t.name!r}: bytes {start_byte}..{start_byte + nbytes} past its {entry.file_size}-byte storage"
        )
    if entry.compress_type == zipfile.ZIP_STORED:
        out.offset = data_offset(f, entry) + start_byte
        out.nbytes = nbytes
    return out


def _read_legacy(f: BoundedFile, info: FormatInfo) -> None:
    first = Machine(f, MAX_PICKLE_BYTES).run()
    if not (first.complete and first.value == LEGACY_MAGIC):
        # A plain pickle with a torch extension: scan it as one.
        f.seek(0)
        apply_scan(info, scan_pickle(f, MAX_PICKLE_BYTES), "pickle")
        return
    info.metadata["legacy_format"] = True
    runs = [first]
    for _ in range(4):  # protocol version, sys_info, the object, the storage keys
        run = Machine(f, MAX_PICKLE_BYTES).run()
        runs.append(run)
        apply_scan(info, classify(run), "pickle")
        if not run.complete:
            return
    version, sys_info, obj, keys = (r.value for r in runs[1:])
    info.metadata["protocol_version"] = version if isinstance(version, int) else None
    if isinstance(sys_info, dict) and isinstance(sys_info.get("little_endian"), bool):
        info.metadata["byteorder"] = "little" if sys_info["little_endian"] else "big"
    tensors = find_tensors(obj)
    info.tensors = [TensorFingerprint(name=t.name, dtype=t.dtype, shape=list(t.shape)) for t in tensors]
    if isinstance(keys, list) and len(keys) <= MAX_TENSORS and all(isinstance(k, str) for k in keys):
        _locate_legacy(f, keys, tensors, info.tensors)


def _locate_legacy(f: BoundedFile, keys: list[str], tensors: list[TorchTensor], out: list[TensorFingerprint]) -> None:
    """Walk the storages after the pickles (8-byte count, then bytes) to place each tensor."""
    sizes: dict[str, int] = {}
    for t in tensors:
        sizes.setdefault(t.key, storage_itemsize(t.storage_type))
    starts: dict[str, tuple[int, int]] = {}
    pos = f.tell()
    for key in keys:
        itemsize = sizes.get(key, 0)
        if not itemsize:
            break  # a storage no tensor describes: its width, and so everything after it, is unknown
        (count,) = struct.unpack("<Q", f.read_at(pos, 8, f"size of storage {key!r}"))
        nbytes = count * itemsize
        if pos + 8 + nbytes > f.size:
            raise FormatError(f"legacy storage {key!r}: {nbytes} bytes claimed past the end of the file")
        starts[key] = (pos + 8, nbytes)
        pos += 8 + nbytes
    for t, fp in zip(tensors, out, strict=True):
        if t.key not in starts or not t.itemsize:
            continue
        start, size = starts[t.key]
        begin, nbytes = t.offset * t.itemsize, t.span * t.itemsize
        if begin + nbytes > size:
            raise FormatError(f"tensor {t.name!r}: bytes past the end of its storage")
        fp.offset, fp.nbytes = start + begin, nbytes
