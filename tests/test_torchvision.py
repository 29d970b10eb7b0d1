"""torchvision / timm ResNet weights in jaxtl: read without torch, same logits as PyTorch.

The fixtures (tests/fixtures/make_torchvision_fixtures.py, run with torch) are narrow
torchvision ResNets with BasicBlock and Bottleneck units, their weights saved by
torch.save and as safetensors, and PyTorch's float64 logits on random images.
"""
import collections
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtl import checkpoint, partition, state_dict
from jaxtl.errors import ConfigError
from jaxtl.models import build_model
from tests import reference
from tests.conftest import REPO

FIXTURES = os.path.join(REPO, "tests", "fixtures")
NARROW = dict(widths=(4, 8, 16, 16), units=(2, 1, 1, 1))
DEPTH = {"basic": 18, "bottleneck": 50}  # the unit kind of torchvision's resnet18 / resnet50
# float64 against float64: the same function summed in another order, a few hundred ulps
# of the logits' scale at most; a misplaced or untransposed tensor is off by its scale.
F64_RTOL = 1e-12


def _fixture(kind):
  return dict(np.load(os.path.join(FIXTURES, f"torchvision_{kind}.npz")))


def _imported(kind, suffix, image_size=0, conv="auto"):
  model = build_model(f"torchvision_resnet{DEPTH[kind]}", num_classes=5, image_size=image_size,
                      conv=conv, **NARROW)
  fresh = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 37, 37, 3)), train=False)
  path = os.path.join(FIXTURES, f"torchvision_{kind}.{suffix}")
  variables, report = checkpoint.load_pretrained(fresh, checkpoint.load_variables(path),
                                                 reinit=(), strict=True)
  return model, variables, report


def _scale_error(got, want):
  return float(np.max(np.abs(np.asarray(got) - want)) / np.max(np.abs(want)))


@pytest.mark.parametrize("suffix,conv", [("pth", "auto"), ("safetensors", "xla")])
@pytest.mark.parametrize("kind", ["basic", "bottleneck"])
def test_imported_resnet_computes_pytorchs_logits(kind, suffix, conv):
  """Both file formats, and both convolution kernels (at 37x37 "auto" takes im2col
  everywhere but the stem)."""
  model, variables, report = _imported(kind, suffix, conv=conv)
  assert not report["reinitialised"] and not report["skipped"]
  ref = _fixture(kind)
  with reference.float64():
    v64, x = reference.to_float64(variables), jnp.asarray(ref["images"])
    assert _scale_error(model.apply(v64, x, train=False), ref["logits_eval"]) < F64_RTOL
    train, _ = model.apply(v64, x, train=True, mutable=["batch_stats"])
    assert _scale_error(train, ref["logits_train"]) < F64_RTOL
  got = model.apply(variables, jnp.asarray(ref["images"], jnp.float32), train=False)
  assert _scale_error(got, ref["logits_eval"]) < reference.F32_RTOL


def test_grey_images_are_replicated_and_resized_as_torchvision_does():
  model, variables, _ = _imported("basic", "pth", image_size=37)
  ref = _fixture("basic")
  with reference.float64():
    got = model.apply(reference.to_float64(variables), jnp.asarray(ref["grey"]), train=False)
    assert _scale_error(got, ref["logits_grey"]) < F64_RTOL


def test_blocks_are_torchvisions_stages_and_a_frozen_prefix_feeds_the_rest():
  model, variables, _ = _imported("bottleneck", "safetensors")
  params = variables["params"]
  assert model.block_names() == ("block1", "block2", "block3", "block4", "head")
  assert set(params["block1"]) == {"stem_conv", "stem_bn", "unit1", "unit2"}
  assert set(params["block2"]["unit1"]) >= {"conv3", "proj", "proj_bn"}
  torch_weights = state_dict.read_state_dict(os.path.join(FIXTURES, "torchvision_bottleneck.pth"))
  np.testing.assert_array_equal(params["block4"]["unit1"]["conv2"]["kernel"],
                                torch_weights["layer4.0.conv2.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(params["head"]["kernel"], torch_weights["fc.weight"].T)
  x = jnp.asarray(_fixture("bottleneck")["images"], jnp.float32)
  prefix = model.apply(variables, x, train=False, stop=2)
  np.testing.assert_array_equal(model.apply(variables, prefix, train=False, start=2),
                                model.apply(variables, x, train=False))


def _write_safetensors(path, tensors):
  header, offset, blobs = {}, 0, []
  for name, array in tensors.items():
    blob = np.ascontiguousarray(array, "<f4").tobytes()
    header[name] = {"dtype": "F32", "shape": list(array.shape),
                    "data_offsets": [offset, offset + len(blob)]}
    offset += len(blob)
    blobs.append(blob)
  text = json.dumps(header).encode()
  with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def _load_into(kind, path):
  model = build_model(f"torchvision_resnet{DEPTH[kind]}", num_classes=5, image_size=0, **NARROW)
  fresh = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 37, 37, 3)), train=False)
  return checkpoint.load_pretrained(fresh, checkpoint.load_variables(path), reinit=(),
                                    strict=True)


def test_a_mismatch_is_refused_naming_each_tensor(tmp_path):
  weights = state_dict.read_state_dict(os.path.join(FIXTURES, "torchvision_basic.pth"))
  # Another architecture: Bottleneck weights into a BasicBlock net.
  with pytest.raises(ConfigError) as e:
    _load_into("basic", os.path.join(FIXTURES, "torchvision_bottleneck.safetensors"))
  text = str(e.value)
  assert "block1/unit1/conv3/kernel: in the checkpoint, not in the model" in text
  assert "params/block1/unit1/conv1/kernel: checkpoint shape (1, 1, 4, 4)" in text
  # A missing tensor.
  missing = dict(weights)
  del missing["layer3.0.bn2.running_var"]
  _write_safetensors(tmp_path / "missing.safetensors", missing)
  with pytest.raises(ConfigError, match="batch_stats/block3/unit1/bn2/var: not in the checkpoint"):
    _load_into("basic", str(tmp_path / "missing.safetensors"))
  # A tensor with no place in a torchvision ResNet (timm's deep stem, resnet50d).
  deep = {("conv1.0.weight" if k == "conv1.weight" else k): v for k, v in weights.items()}
  _write_safetensors(tmp_path / "deep.safetensors", deep)
  with pytest.raises(ConfigError, match=r"Not a torchvision ResNet.*\n  conv1.0.weight: shape"):
    checkpoint.load_variables(str(tmp_path / "deep.safetensors"))


def test_files_that_are_no_state_dict_are_refused_without_running_them(tmp_path):
  (tmp_path / "notes.pth").write_bytes(b"these are not weights")
  with pytest.raises(ConfigError, match="is not a checkpoint"):
    state_dict.read_state_dict(str(tmp_path / "notes.pth"))
  (tmp_path / "legacy.pth").write_bytes(pickle.dumps({"a": 1}, protocol=2))
  with pytest.raises(ConfigError, match="legacy"):
    state_dict.read_state_dict(str(tmp_path / "legacy.pth"))
  with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
    z.writestr("readme.txt", "hello")
  with pytest.raises(ConfigError, match="no data.pkl"):
    state_dict.read_state_dict(str(tmp_path / "other.zip"))
  # A pickle naming a class a state dict never holds is refused before it is built.
  with zipfile.ZipFile(tmp_path / "model.pth", "w") as z:
    z.writestr("model/data.pkl", pickle.dumps(collections.Counter(a=1), protocol=2))
  with pytest.raises(ConfigError, match="pickles collections.Counter"):
    state_dict.read_state_dict(str(tmp_path / "model.pth"))
  with pytest.raises(ConfigError, match="No checkpoint file"):
    state_dict.read_state_dict(str(tmp_path / "nowhere.safetensors"))


def test_wrapped_and_data_parallel_state_dicts_are_unwrapped(tmp_path):
  weights = state_dict.read_state_dict(os.path.join(FIXTURES, "torchvision_basic.safetensors"))
  _write_safetensors(tmp_path / "dp.safetensors", {f"module.{k}": v for k, v in weights.items()})
  got = state_dict.read_state_dict(str(tmp_path / "dp.safetensors"))
  assert sorted(got) == sorted(weights)
  np.testing.assert_array_equal(got["fc.weight"], weights["fc.weight"])


def _run(module, *args):
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAXTL_COMPILATION_CACHE="")
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600)


def test_surgical_fine_tuning_of_imported_weights_from_the_command_line(tmp_path):
  weights = os.path.join(FIXTURES, "torchvision_basic.pth")
  proc = _run("experiments.finetune", "--config=experiments/configs/finetune.py:torchvision_quick",
              f"--workdir={tmp_path / 'run'}", f"--config.init_from={weights}",
              "--config.strategy=surgical", "--config.blocks=block3")
  assert proc.returncode == 0, proc.stderr[-3000:]
  final = checkpoint.load_variables(str(tmp_path / "run"))
  _, imported, _ = _imported("basic", "pth")
  before = partition.flatten(imported["params"])
  moved = {p for p, v in partition.flatten(final["params"]).items()
           if not p.startswith("head/") and not np.array_equal(v, before[p])}
  assert moved and all(p.startswith("block3/") for p in moved), moved  # the rest bit-identical
  for p, v in partition.flatten(final["batch_stats"]).items():  # frozen batch norm
    np.testing.assert_array_equal(v, partition.flatten(imported["batch_stats"])[p])


def test_compare_imported_weights_and_clear_errors_from_the_command_line(tmp_path):
  weights = os.path.join(FIXTURES, "torchvision_basic.safetensors")
  proc = _run("experiments.compare_finetune",
              "--config=experiments/configs/compare.py:torchvision_quick",
              f"--workdir={tmp_path / 'cmp'}", f"--config.pretrain.init_from={weights}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(tmp_path / "cmp" / "results.json") as f:
    assert set(json.load(f)["metrics"]) == {"all", "block2"}
  for flags, expected in [
      ((), "no source task"),
      ((f"--config.pretrain.init_from={FIXTURES}/make_torchvision_fixtures.py",),
       "is not a checkpoint"),
      ((f"--config.pretrain.init_from={FIXTURES}/torchvision_bottleneck.pth",),
       "does not fit the model"),
  ]:
    proc = _run("experiments.compare_finetune",
                "--config=experiments/configs/compare.py:torchvision_quick",
                f"--workdir={tmp_path / 'bad'}", *flags)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "error: " in proc.stderr and expected in proc.stderr, proc.stderr[-3000:]


def test_your_colour_photos_fine_tune_imported_weights_as_they_are(tmp_path):
  """A folder of RGB images reaches the network in colour and uninverted (a light
  background stays light), and fine-tunes from the command line."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from jaxtl.data import load_dataset  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  for split, n in (("train", 6), ("test", 2)):
    for c, colour in enumerate(((250, 200, 40), (30, 90, 240))):
      os.makedirs(tmp_path / "photos" / split / f"class{c}")
      for i in range(n):
        pixels = np.clip(rng.normal(colour, 20, (12, 12, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / "photos" / split / f"class{c}" / f"{i}.png")
  ds = load_dataset(str(tmp_path / "photos"), "train", channels=3, polarity="light_ink")
  assert ds.images.shape == (12, 12, 12, 3)
  np.testing.assert_allclose(ds.images[0].mean((0, 1)), np.array((250, 200, 40)) / 255, atol=0.05)
  proc = _run("experiments.finetune", "--config=experiments/configs/finetune.py:torchvision_quick",
              f"--workdir={tmp_path / 'run'}", f"--config.dataset={tmp_path / 'photos'}",
              f"--config.init_from={os.path.join(FIXTURES, 'torchvision_basic.pth')}",
              "--config.classes=()", "--config.num_train=8", "--config.num_val=4",
              "--config.batch_size=4")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "data: 8 training, 4 validation and 4 test examples" in proc.stderr, proc.stderr[-2000:]


def test_a_folder_size_crops_the_centre_as_torchvisions_eval_transform(tmp_path):
  """size=S: the short side resized to S, the centre S x S kept (a wide image loses its
  left and right ends)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from jaxtl.data.images import to_model_input  # pylint: disable=import-outside-toplevel
  wide = np.zeros((10, 30, 3), np.uint8)
  wide[:, :10], wide[:, 10:20], wide[:, 20:] = (255, 0, 0), (0, 0, 255), (0, 255, 0)
  x = to_model_input(Image.fromarray(wide), 6, channels=3, polarity="light_ink")
  assert x.shape == (6, 6, 3)
  np.testing.assert_allclose(x[1:-1, 1:-1].reshape(-1, 3), [[0, 0, 1]] * 16, atol=0.02)


def _unicode(text):
  return b"X" + struct.pack("<I", len(text)) + text.encode()


def test_damaged_or_crafted_files_are_refused_in_one_message(tmp_path):
  # A tensor claiming 200,000 elements of a 1-element storage: refused, not read past it.
  pickled = (b"\x80\x02}" + _unicode("w") + b"ctorch._utils\n_rebuild_tensor_v2\n(("
             + _unicode("storage") + b"ctorch\nFloatStorage\n" + _unicode("0") + _unicode("cpu")
             + b"K\x01tQK\x00J" + struct.pack("<i", 200_000) + b"\x85K\x01\x85\x89"
             + b"ccollections\nOrderedDict\n)RtRs.")
  with zipfile.ZipFile(tmp_path / "crafted.pth", "w") as z:
    z.writestr("archive/data.pkl", pickled)
    z.writestr("archive/data/0", struct.pack("<f", 1.0))
  with pytest.raises(ConfigError, match="reaches element 199999 of a storage of 1"):
    state_dict.read_state_dict(str(tmp_path / "crafted.pth"))
  # A download cut short.
  whole = open(os.path.join(FIXTURES, "torchvision_basic.pth"), "rb").read()
  (tmp_path / "cut.pth").write_bytes(whole[: len(whole) // 2])
  with pytest.raises(ConfigError, match="damaged or truncated"):
    state_dict.read_state_dict(str(tmp_path / "cut.pth"))
  # A safetensors header whose byte ranges do not hold the shapes it names.
  weights = state_dict.read_state_dict(os.path.join(FIXTURES, "torchvision_basic.safetensors"))
  _write_safetensors(tmp_path / "bad.safetensors", {"fc.bias": weights["fc.bias"]})
  raw = bytearray((tmp_path / "bad.safetensors").read_bytes())
  raw[:] = raw.replace(b'"shape": [5]', b'"shape": [4]')
  (tmp_path / "bad.safetensors").write_bytes(bytes(raw))
  with pytest.raises(ConfigError, match="do not hold its shape"):
    state_dict.read_state_dict(str(tmp_path / "bad.safetensors"))
