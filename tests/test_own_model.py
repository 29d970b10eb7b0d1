"""A user's own Flax module, defined here, through the fine-tuning trainer and MAML."""
import flax.linen as nn
import jax
import numpy as np
import pytest

from experiments.configs import finetune as finetune_configs
from experiments.configs import meta as meta_configs
from jaxtl import checkpoint, partition
from jaxtl.data import load_dataset
from jaxtl.finetune import data as finetune_data
from jaxtl.finetune import trainer
from jaxtl.meta import algorithms, tasks
from jaxtl.meta import train as meta_train
from jaxtl.models import block_names
from tests.conftest import run_readme_example


class TwoLayerNet(nn.Module):
  """No block_names(), no batch norm: its blocks are its top-level groups."""
  outputs: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # nothing behaves differently in training
    x = nn.relu(nn.Dense(16, name="features")(x.reshape((x.shape[0], -1))))
    return nn.Dense(self.outputs, name="classifier")(x)


def _digits(n=5):
  config = finetune_configs.get_config("quick")
  train = load_dataset("digits", "train").select_classes(list(range(n)))
  test = load_dataset("digits", "test").select_classes(list(range(n)))
  return config, finetune_data.split_train_val(train, 50, 20, 0) + (test,)


def test_blocks_of_a_module_without_block_names_are_its_parameter_groups():
  model = TwoLayerNet(3)
  params = model.init(jax.random.PRNGKey(0), np.zeros((1, 8, 8, 1)))["params"]
  assert block_names(model, params) == ("features", "classifier")


def test_fine_tuning_a_users_module_changes_only_its_head(tmp_path):
  config, data = _digits()
  config.strategy, config.reinit = "linear_probe", ()
  model = TwoLayerNet(5)
  metrics = trainer.train_and_evaluate(config, str(tmp_path), data=data, model=model)
  init = model.init(jax.random.split(jax.random.PRNGKey(config.seed))[0],
                    data[0].images[:1], train=False)
  final = checkpoint.load_variables(str(tmp_path))
  before, after = partition.flatten(init["params"]), partition.flatten(final["params"])
  changed = sorted(p for p in before if not np.array_equal(before[p], after[p]))
  assert changed == ["classifier/bias", "classifier/kernel"]
  assert metrics["frozen_params"] == 64 * 16 + 16 and 0 <= metrics["test_accuracy"] <= 1


def test_maml_on_a_users_module_adapts_every_weight(tmp_path):
  config = meta_configs.get_config("sinusoid")
  config.num_steps, config.steps_per_call, config.log_every = 4, 2, 2
  config.checkpoint_every, config.eval_tasks, config.eval_batch = 4, 10, 10
  model = TwoLayerNet(1)
  learner = meta_train.make_learner(config, model)
  params = learner.init(jax.random.PRNGKey(0), np.zeros((1, 1), np.float32))[0]["params"]
  assert all(jax.tree_util.tree_leaves(learner.labels(params)))  # no batch norm to exclude
  assert learner.inner_table == algorithms.MAML_TABLE
  metrics = meta_train.train_and_evaluate(config, str(tmp_path), model=model)
  mse = metrics["test_mse_by_steps"]
  assert np.isfinite(list(mse.values())).all() and set(mse) == {"0", "1", "5", "10"}


def test_the_readme_example_runs(tmp_path):
  stdout = run_readme_example("own-model-example", tmp_path)
  accuracy = float(stdout.split("test accuracy")[-1])
  assert accuracy > 0.8  # an MLP learns the 8x8 digits well past chance (0.1)


def test_meta_learning_on_another_dataset_with_a_random_class_split(tmp_path):
  config = meta_configs.get_config("quick")  # 5-way 1-shot, a tiny conv net
  config.dataset, config.class_split, config.num_train_classes = "digits", "random", 5
  config.rotate_train = False
  metrics = meta_train.train_and_evaluate(config, str(tmp_path))
  assert 0 <= metrics["test_accuracy"] <= 1 and metrics["data"]["dataset"] == "digits"
  splits = tasks.class_splits(load_dataset("digits", "all"), "random", config.split_seed,
                              num_train=5)
  assert sorted(np.concatenate([splits["train"], splits["test"]])) == list(range(10))
  config.class_split = "maml"  # Omniglot's, named as such
  with pytest.raises(ValueError, match="is Omniglot's; for digits use class_split='random'"):
    meta_train.make_task_data(config)
