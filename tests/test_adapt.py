"""jaxtl.adapt and experiments.adapt: a finished run adapted to a user's task."""
import dataclasses
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from experiments.configs import finetune as finetune_configs
from experiments.configs import meta as meta_configs
from jaxtl import adapt
from jaxtl.data import load_dataset
from jaxtl.errors import ConfigError
from jaxtl.finetune import trainer
from jaxtl.meta import train as meta_train
from jaxtl.models import batch_statistics
from tests.conftest import run_readme_example
from tests.reference import float64
from tests.test_experiments import _fails_in_one_line, _run


@pytest.fixture(scope="module", params=["maml", "protonet"])
def meta_run(request, data_dir, tmp_path_factory):
  """A quick 5-way 1-shot Omniglot run, its config and its first chunk of test tasks."""
  config = meta_configs.get_config("quick")
  config.data_dir, config.algorithm = data_dir, request.param
  workdir = str(tmp_path_factory.mktemp(request.param))
  meta_train.train_and_evaluate(config, workdir)
  data = meta_train.make_task_data(config)
  test_data, sampler = data.test, data.test_sampler
  key = jax.random.fold_in(jax.random.PRNGKey(config.eval_seed), 0)  # evaluate's first chunk
  episodes = jax.tree_util.tree_map(np.asarray, sampler(key, test_data, config.eval_batch))
  return config, workdir, episodes, (test_data, sampler)


def _near_ties(probabilities, tol=1e-4):
  """Queries whose two most likely classes are within `tol` in log-probability. Two
  float32 computations of the same network (another batch size, vmapped or not) round
  differently, by far less than 1e-4 in the logits of these small networks on any CPU;
  only such near-ties may come out with another label."""
  top2 = np.sort(np.log(np.maximum(probabilities, 1e-30)), axis=-1)[..., -2:]
  return (top2[..., 1] - top2[..., 0]) < tol


def _write_png(path, image):
  """Omniglot-style: dark ink on white, as the original files (jaxtl's arrays: ink near 1)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.round((1 - image[..., 0]) * 255).astype(np.uint8)).save(path)


def _write_task(root, episodes, i):
  """Task i as root/{support,query}/c<label>/<index>.png."""
  for part in ("support", "query"):
    x, y = getattr(episodes, f"{part}_x")[i], getattr(episodes, f"{part}_y")[i]
    for j, (image, label) in enumerate(zip(x, y)):
      _write_png(os.path.join(root, part, f"c{label}", f"{j}.png"), image)
  return os.path.join(root, "support"), os.path.join(root, "query")


def test_adapt_equals_the_episodic_evaluation_with_support_statistics(meta_run, tmp_path):
  config, workdir, episodes, (test_data, sampler) = meta_run
  run = adapt.load(workdir)
  episodic = config.copy_and_resolve_references()
  episodic.batch_norm = "support"
  per_task = meta_train.evaluate_per_task(
      episodic, meta_train.make_learner(episodic), run.meta_params, run.batch_stats, test_data,
      sampler)[:, config.test_inner_steps]
  from_arrays = [run.adapt(episodes.support_x[i], episodes.support_y[i])
                 .predict(episodes.query_x[i]) for i in range(config.eval_batch)]
  correct = np.array([np.sum(p.labels == y) for p, y in zip(from_arrays, episodes.query_y)])
  ties = np.array([_near_ties(p.probabilities).sum() for p in from_arrays])
  queries = episodes.query_y.shape[1]  # episodic accuracies are float32 means of 0s and 1s
  episodic = np.round(per_task[:config.eval_batch] * queries)
  assert (np.abs(correct - episodic) <= ties).all(), (correct, episodic, ties)
  # The same tasks as PNG folders, through the command line: the files read back exactly.
  support, query = _write_task(str(tmp_path / "task0"), episodes, 0)
  read = adapt.load(workdir).adapt(support).predict(query)
  assert read.paths and np.array_equal(read.true_labels, episodes.query_y[0])
  out = str(tmp_path / "predictions.csv")
  proc = _run("experiments.adapt", f"--workdir={workdir}", f"--support={support}",
              f"--query={query}", f"--out={out}")
  printed = float(proc.stdout.split("accuracy ")[-1].split()[0])
  assert abs(printed - per_task[0]) * 5 <= ties[0] + 1e-6, (proc.stdout, per_task[0])
  with open(out) as f:
    rows = f.read().splitlines()
  assert rows[0] == "path,predicted,true,p_c0,p_c1,p_c2,p_c3,p_c4" and len(rows) == 6


def test_a_query_is_predicted_the_same_alone_and_in_a_batch(meta_run):
  config, workdir, episodes, _ = meta_run
  task = adapt.load(workdir).adapt(episodes.support_x[0], episodes.support_y[0])
  together = task.predict(episodes.query_x[0])
  for j, image in enumerate(episodes.query_x[0]):
    alone = task.predict(image[None])
    assert alone.labels[0] == together.labels[j] or _near_ties(together.probabilities[j])
    # Only the batch size differs: float32 sums in another order, rounding ~ 1e-7 relative.
    np.testing.assert_allclose(alone.probabilities[0], together.probabilities[j], atol=1e-5)
  assert config.batch_norm == "transductive"  # trained as MAML; predicted inductively


class TwoMomenta(nn.Module):
  """Batch norm layers with different momenta, not jaxtl's: statistics found generically."""
  @nn.compact
  def __call__(self, x, train=False):
    x = nn.BatchNorm(use_running_average=not train, momentum=0.5)(nn.Dense(6)(x))
    x = nn.relu(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.99)(nn.Dense(4)(x))
    return nn.Dense(3)(x)


def test_batch_statistics_reproduce_train_mode_for_any_momentum():
  with float64():  # float64: the identity holds to rounding of 1e-16
    x = jax.random.normal(jax.random.PRNGKey(0), (9, 5), jnp.float64) * 3 + 2
    model = TwoMomenta()
    variables = model.init(jax.random.PRNGKey(1), x)
    trained, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
    stats = batch_statistics(model, variables["params"], variables["batch_stats"], x)
    inferred = model.apply({"params": variables["params"], "batch_stats": stats}, x)
    np.testing.assert_allclose(inferred, trained, rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def finetune_run(tmp_path_factory):
  """A quick ResNet pre-trained on the embedded digits 0-4."""
  config = finetune_configs.get_config("quick_source")
  workdir = str(tmp_path_factory.mktemp("source"))
  metrics = trainer.train_and_evaluate(config, workdir)
  return config, workdir, metrics


def test_a_fine_tuned_run_predicts_its_own_classes_as_its_trainer_evaluates(finetune_run):
  config, workdir, metrics = finetune_run
  test = load_dataset("digits", "test").select_classes(list(config.classes))
  predictions = adapt.load(workdir).adapt().predict(test.images)
  assert predictions.class_names == ("0", "1", "2", "3", "4")
  correct = np.sum(predictions.labels == test.labels)  # the trainer evaluates in batches
  ties = _near_ties(predictions.probabilities).sum()
  assert abs(correct - metrics["test_accuracy"] * len(test)) <= ties + 1e-3


def test_a_linear_probe_fits_only_a_new_head_for_any_number_of_classes(finetune_run):
  _, workdir, _ = finetune_run
  digits = load_dataset("digits", "train")
  x = np.concatenate([digits.images[digits.labels == c][:4] for c in (5, 6, 7)])
  y = np.repeat(np.arange(3), 4)
  run = adapt.load(workdir)
  task = run.adapt(x, y, class_names=("five", "six", "seven"), steps=30)
  assert task.params["head"]["kernel"].shape[-1] == 3
  for name, block in run.meta_params["params"].items():  # the body is bit-identical
    if name != "head":
      jax.tree_util.tree_map(np.testing.assert_array_equal, task.params[name], block)
  before = run.adapt(x, y, steps=0).predict(x).probabilities  # a zero head: uniform
  after = task.predict(x).probabilities
  np.testing.assert_allclose(before, 1 / 3, rtol=1e-6)
  assert -np.log(after[np.arange(len(y)), y]).mean() < np.log(3)  # the support loss fell


def _folder(root, classes, per_class=1, image=None):
  """root/<class>/<i>.png of random 28x28 grey images (or `image`)."""
  rng = np.random.default_rng(0)
  for c in classes:
    for i in range(per_class):
      pixels = image if image is not None else rng.integers(0, 256, (28, 28), np.uint8)
      os.makedirs(os.path.join(root, c), exist_ok=True)
      Image.fromarray(pixels).save(os.path.join(root, c, f"{i}.png"))
  return str(root)


def test_bad_inputs_are_one_line_errors(meta_run, tmp_path):
  config, workdir, _, _ = meta_run
  run = adapt.load(workdir)
  if config.algorithm == "protonet":  # prototypes serve any number of classes
    assert run.adapt(_folder(tmp_path / "three", "abc")).predict(
        _folder(tmp_path / "q3", "ab")).labels.shape == (2,)
    return
  with pytest.raises(ConfigError, match="has 3 classes but .* was meta-trained 5-way"):
    run.adapt(_folder(tmp_path / "three", "abc"))
  empty = _folder(tmp_path / "empty", "abcd")
  os.makedirs(os.path.join(empty, "e"))
  with pytest.raises(ConfigError, match="Class folder .*e holds no image file"):
    run.adapt(empty)
  broken = _folder(tmp_path / "broken", "abcde")
  with open(os.path.join(broken, "c", "1.png"), "w") as f:
    f.write("not an image")
  with pytest.raises(ConfigError, match="Cannot read image .*1.png"):
    run.adapt(broken)
  task = run.adapt(_folder(tmp_path / "five", "abcde"))
  os.makedirs(tmp_path / "no_images")
  with pytest.raises(ConfigError, match="no_images holds no image file"):
    task.predict(str(tmp_path / "no_images"))
  with pytest.raises(ConfigError, match=r"the model takes \(N, 28, 28, 1\)"):
    task.predict(np.zeros((2, 32, 32, 1)))
  with pytest.raises(ConfigError, match="meta-learned: it predicts after adapting"):
    run.adapt()
  last = _fails_in_one_line("experiments.adapt", f"--workdir={workdir}",
                            f"--support={tmp_path / 'three'}", f"--query={tmp_path / 'five'}")
  assert "has 3 classes but" in last and "Give 5 classes" in last


def test_the_readme_example_runs(tmp_path):
  stdout = run_readme_example("adapt-example", tmp_path)
  assert float(stdout.split("accuracy")[-1]) > 0.5  # 5 classes: chance is 0.2


@pytest.mark.parametrize("run", ["omniglot_5w1s_maml", "omniglot_5w1s_protonet"])
def test_committed_runs_adapt_from_any_folder_without_training_data(run, tmp_path):
  """The headline runs saved a data_dir that is not here (.gpu_data, ../shared/data):
  their recorded input shape means no training data is read, from any working folder."""
  rng = np.random.default_rng(0)
  for c in range(5):
    (tmp_path / "support" / f"c{c}").mkdir(parents=True)
    Image.fromarray((rng.random((28, 28)) * 255).astype(np.uint8)).save(
        tmp_path / "support" / f"c{c}" / "0.png")
  (tmp_path / "query").mkdir()
  Image.fromarray((rng.random((40, 30)) * 255).astype(np.uint8)).save(tmp_path / "query" / "q.png")
  env_dir = os.environ.pop("JAXTL_DATA_DIR", None)
  try:
    proc = _run("experiments.adapt", f"--workdir={os.path.join(adapt.REPO, 'results', run)}",
                f"--support={tmp_path / 'support'}", f"--query={tmp_path / 'query'}",
                cwd=str(tmp_path))
  finally:
    if env_dir is not None:
      os.environ["JAXTL_DATA_DIR"] = env_dir
  name, label, probability = proc.stdout.strip().splitlines()[-1].split("\t")
  assert name.endswith("q.png") and label in {f"c{c}" for c in range(5)}
  assert 0.2 <= float(probability) <= 1.0


def test_data_dir_is_the_callers_then_the_environments_then_the_runs(monkeypatch):
  import ml_collections  # pylint: disable=import-outside-toplevel
  config = ml_collections.ConfigDict({"data_dir": "../shared/data"})
  monkeypatch.delenv("JAXTL_DATA_DIR", raising=False)
  assert adapt.data_dir_of(config) == os.path.join(adapt.REPO, "../shared/data")
  monkeypatch.setenv("JAXTL_DATA_DIR", "/env")
  assert adapt.data_dir_of(config) == "/env"
  assert adapt.data_dir_of(config, "/flag") == "/flag"


def test_the_probe_on_features_computed_once_takes_the_same_steps(finetune_run):
  """For jaxtl's models the body's output is computed once and the head fitted on it; a
  module that runs only whole (no `start`) takes the same steps through the full network
  at every step. Both in float64: the same head to rounding."""
  _, workdir, _ = finetune_run
  digits = load_dataset("digits", "train")
  x = np.concatenate([digits.images[digits.labels == c][:4] for c in (5, 6, 7)])
  y = np.repeat(np.arange(3), 4)
  run = adapt.load(workdir)
  with float64():
    wide = lambda tree: jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)
    run = dataclasses.replace(run, meta_params=wide(run.meta_params),
                              batch_stats=wide(run.batch_stats))
    x = x.astype(np.float64)
    cached = run.adapt(x, y, steps=20).params["head"]
    original = adapt.prefix.sliceable
    adapt.prefix.sliceable = lambda model: False
    try:
      whole = run.adapt(x, y, steps=20).params["head"]
    finally:
      adapt.prefix.sliceable = original
  assert adapt.prefix.sliceable(run.learner.model)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12),
                         cached, whole)
  assert float(np.abs(cached["kernel"]).max()) > 0  # the head moved
