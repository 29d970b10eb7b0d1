"""PyTorch state dicts read without PyTorch: `read_state_dict(path)` -> {name: ndarray}.

Two formats, told apart by their content, not their suffix:
  * what `torch.save(model.state_dict(), "x.pth")` writes (torch >= 1.6): a zip holding
    `data.pkl` and one raw file per storage. The pickle is read by an unpickler that
    knows only what a state dict holds (ordered dicts, tensors, storages, parameters),
    so a checkpoint cannot run code when loaded, as `torch.load(weights_only=True)`.
  * safetensors: an 8-byte little-endian header length, a JSON header
    (name -> dtype, shape, data_offsets) and the raw bytes.
A checkpoint that wraps its state dict (`{"state_dict": ...}`, `{"model": ...}`, as
Lightning's training script saves) is unwrapped, and DataParallel's `module.`,
Lightning's `model.` and torch.compile's `_orig_mod.` prefixes dropped. A training
checkpoint that pickles other objects beside its weights (timm's train.py stores its
argparse arguments) is refused: save `checkpoint["state_dict"]` alone, or convert it with
timm's `clean_checkpoint.py`.
"""
import collections
import json
import os
import pickle
import struct
import zipfile
from typing import Dict

import ml_dtypes
import numpy as np

from jaxtl.errors import ConfigError, MissingInputError

SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")
_TORCH_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_}
_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
    "BOOL": np.bool_}
_WRAPPERS = ("state_dict", "model", "model_state", "model_state_dict", "module")
# DataParallel's, Lightning's and torch.compile's prefixes on every name
_PREFIXES = ("module.", "model.", "_orig_mod.")


def is_weights_file(path: str) -> bool:
  """A file (not a jaxtl run folder) named like a PyTorch or safetensors checkpoint."""
  return os.path.isfile(path) or path.endswith(SUFFIXES)


def read_state_dict(path: str) -> Dict[str, np.ndarray]:
  """The tensors of the PyTorch checkpoint or safetensors file at `path`, by name."""
  if not os.path.isfile(path):
    raise MissingInputError(f"No checkpoint file at {path}.")
  with open(path, "rb") as f:
    head = f.read(8)
  try:
    if zipfile.is_zipfile(path):
      tensors = _read_torch_zip(path)
    elif head[:4] == b"PK\x03\x04":
      raise ConfigError(f"{path} is a damaged or truncated zip (a download cut short?).")
    elif len(head) == 8 and _looks_like_safetensors(path, head):
      tensors = _read_safetensors(path)
    elif head[:2] == b"\x80\x02":  # a bare pickle: torch.save before 1.6 (legacy format)
      raise ConfigError(f"{path} is in PyTorch's legacy (pre-1.6) format; re-save it with "
                        "torch.save(torch.load(path), path) on torch >= 1.6, or convert it "
                        "to .safetensors.")
    else:
      raise ConfigError(f"{path} is not a checkpoint: neither a PyTorch file written by "
                        "torch.save (a zip) nor a .safetensors file.")
  except ConfigError:
    raise
  except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, KeyError, ValueError,
          TypeError, IndexError, OSError) as e:
    raise ConfigError(f"{path} is damaged or truncated ({type(e).__name__}: "
                      f"{str(e)[:200]}).") from e
  return _unwrap(tensors, path)


def _unwrap(obj, path: str) -> Dict[str, np.ndarray]:
  while isinstance(obj, dict) and not any(isinstance(v, np.ndarray) for v in obj.values()):
    inner = [k for k in _WRAPPERS if isinstance(obj.get(k), dict)]
    if not inner:
      raise ConfigError(f"{path} holds no tensors at its top level and none under "
                        f"{list(_WRAPPERS)}; its keys: {sorted(map(str, obj))[:10]}.")
    obj = obj[inner[0]]
  if not isinstance(obj, dict):
    raise ConfigError(f"{path} holds a {type(obj).__name__}, not a state dict (name -> "
                      "tensor): save model.state_dict(), not the model.")
  tensors = {str(k): v for k, v in obj.items() if isinstance(v, np.ndarray)}
  for prefix in _PREFIXES:
    if tensors and all(k.startswith(prefix) for k in tensors):
      tensors = {k[len(prefix):]: v for k, v in tensors.items()}
  return tensors


def _looks_like_safetensors(path: str, head: bytes) -> bool:
  (size,) = struct.unpack("<Q", head)
  return 2 <= size <= min(os.path.getsize(path) - 8, 100_000_000) and _peek(path) == b"{"


def _peek(path):
  with open(path, "rb") as f:
    f.seek(8)
    return f.read(1)


def _read_safetensors(path: str) -> Dict[str, np.ndarray]:
  with open(path, "rb") as f:
    (size,) = struct.unpack("<Q", f.read(8))
    try:
      header = json.loads(f.read(size))
    except ValueError as e:
      raise ConfigError(f"{path}: a damaged safetensors header ({e}).") from e
    data = f.read()
  tensors = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    if info["dtype"] not in _SAFETENSORS_DTYPES:
      raise ConfigError(f"{path}: tensor {name} has dtype {info['dtype']}; readable: "
                        f"{sorted(_SAFETENSORS_DTYPES)}.")
    begin, end = info["data_offsets"]
    dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]]).newbyteorder("<")
    if end > len(data):
      raise ConfigError(f"{path} is truncated: tensor {name} ends at byte {end} of "
                        f"{len(data)}.")
    if not 0 <= begin <= end or end - begin != int(np.prod(info["shape"])) * dtype.itemsize:
      raise ConfigError(f"{path}: tensor {name}'s bytes [{begin}, {end}) do not hold its "
                        f"shape {info['shape']} of {info['dtype']}: a damaged header.")
    tensors[name] = np.frombuffer(data[begin:end], dtype).reshape(info["shape"]).copy()
  return tensors


class _StorageType:
  def __init__(self, name):
    self.dtype = np.dtype(_TORCH_DTYPES[name])


def _rebuild_tensor(storage, offset, size, stride, *_):
  """The tensor's view of its storage, checked to lie inside it (a crafted file must not
  read memory past the storage)."""
  size, stride = tuple(int(n) for n in size), tuple(int(n) for n in stride)
  if (offset < 0 or len(size) != len(stride) or any(n < 0 for n in size)
      or any(s < 0 for s in stride)):
    raise ConfigError(f"A tensor with offset {offset}, size {size}, stride {stride}: damaged.")
  if 0 in size:
    return np.zeros(size, storage.dtype)
  last = offset + sum((n - 1) * s for n, s in zip(size, stride))
  if last >= len(storage):
    raise ConfigError(f"A tensor reaches element {last} of a storage of {len(storage)}: "
                      "the file is damaged or truncated.")
  itemsize = storage.dtype.itemsize
  return np.lib.stride_tricks.as_strided(
      storage[offset:], shape=size, strides=[s * itemsize for s in stride]).copy()


def _rebuild_parameter(data, *_):
  return data


class _StateDictUnpickler(pickle.Unpickler):
  """Knows the few classes a state dict pickles; anything else is refused, unrun."""

  def __init__(self, file, archive: zipfile.ZipFile, prefix: str, byteorder: str, path: str):
    super().__init__(file)
    self.archive, self.prefix, self.byteorder, self.path = archive, prefix, byteorder, path

  def find_class(self, module, name):
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
      return _rebuild_tensor
    if module == "torch._utils" and name == "_rebuild_parameter":
      return _rebuild_parameter
    if module == "torch" and name in _TORCH_DTYPES:
      return _StorageType(name)
    raise ConfigError(f"{self.path} pickles {module}.{name}, which a state dict of tensors "
                      "does not hold (a whole model, or a training checkpoint with its "
                      "arguments): save model.state_dict() alone, e.g. "
                      "torch.save(torch.load(path)['state_dict'], 'weights.pth').")

  def persistent_load(self, pid):
    _, storage_type, key, _, numel = pid  # ("storage", type, key, location, numel)
    dtype = storage_type.dtype.newbyteorder("<" if self.byteorder == "little" else ">")
    raw = self.archive.read(f"{self.prefix}/data/{key}")
    return np.frombuffer(raw, dtype, count=numel)


def _read_torch_zip(path: str):
  with zipfile.ZipFile(path) as archive:
    pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
    if len(pickles) != 1:
      raise ConfigError(f"{path} is a zip but not a PyTorch checkpoint (no data.pkl).")
    prefix = pickles[0][: -len("/data.pkl")]
    names = set(archive.namelist())
    byteorder = (archive.read(f"{prefix}/byteorder").decode().strip()
                 if f"{prefix}/byteorder" in names else "little")
    with archive.open(pickles[0]) as f:
      return _StateDictUnpickler(f, archive, prefix, byteorder, path).load()
