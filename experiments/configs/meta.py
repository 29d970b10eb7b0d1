"""Meta-learning configs; `get_config("VARIANT")`.

    python -m experiments.meta_train --config=experiments/configs/meta.py:omniglot_5w1s \
        --workdir=runs/maml_5w1s [--config.algorithm=anil] [--config.data_dir=../shared/data]
    python -m experiments.meta_eval --config=experiments/configs/meta.py:omniglot_5w1s \
        --workdir=runs/maml_5w1s

Variants (Finn et al. 2017 settings; inner loss is a mean, so alpha = N x the paper's):
  sinusoid: MLP 40-40, K=10, 1 inner step at 0.01, meta-batch 25 (appendix Table 2 runs
      70,000 iterations; this variant 20,000). Test: 5-shot, 600 tasks, MSE after 1/5/10 steps.
  omniglot_5w1s / omniglot_5w5s: 1 inner step (alpha 0.4 x 5 = 2.0), meta-batch 32, 3 test steps.
  omniglot_20w1s / omniglot_20w5s: 5 inner steps (alpha 0.1 x 20 = 2.0), meta-batch 16, 5 test steps.
  Omniglot conv variants use MAML's head (mean-pooled 64 features, N(0, 1) kernel).
  omniglot_5w1s_mlp / omniglot_5w5s_mlp: MAML's MLP row (hidden 256-128-64-64 with batch norm).
  omniglot_*_lake: Lake et al.'s protocol: meta-train on the 30 background alphabets (5 of
      them held out for validation: --config.eval_split=val), test on the 20 evaluation
      alphabets with tasks whose N characters share one alphabet and whose support and
      query drawings are by different drawers (--config.test_tasks=random: any
      characters of the evaluation alphabets; lake_runs: Lake et al.'s own 20 runs). Training knobs for it: train_tasks=alphabet,
      train_way (protonet: more ways in training than in testing), train_affine (each
      training image's own random affine warp, Koch et al.).
  quick: 5-way 1-shot Omniglot, a tiny conv net, a few iterations (tests).
Algorithms (--config.algorithm): maml, fomaml, anil, metasgd, reptile, protonet, blackbox,
relation (a learned metric, Sung et al. 2018), pretrain.
"""
import ml_collections

from jaxtl.errors import ConfigError


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Tasks.
  c.dataset = "omniglot"        # sinusoid, or any image dataset (jaxtl name, folder, TFDS name)
  c.splits = ("all",)           # the dataset's splits whose classes are pooled (mnist: train,test)
  c.data_dir = ""               # offline mirrors; else $JAXTL_DATA_DIR
  c.source = "auto"
  c.class_split = "maml"        # Omniglot's maml: 1200 random train characters / 423 test, or
                                # lake: alphabets; any dataset: random (num_train_classes)
  c.split_seed = 1
  c.num_train_classes = 0       # class_split=random: meta-training classes (0: 60%)
  c.num_val_classes = 0         # taken from the training classes
  c.num_val_alphabets = 0       # lake: whole background alphabets held out for validation
  # Tasks' shape: random (N classes of the split, any K + Q examples each) | alphabet
  # (Lake et al.'s one-shot challenge: N classes of one alphabet, support and query from
  # disjoint drawers; Omniglot's mirror) | lake_runs (test only: Lake et al.'s own 20
  # runs, 20-way 1-shot on the lake split) | lake_drawers (test only: the runs' characters
  # with every ordered pair of their 8 drawers, 560 tasks)
  c.train_tasks = "random"
  c.test_tasks = "random"
  c.eval_split = "test"         # test | val
  c.rotate_train = True         # 90-degree rotations as new classes (MAML)
  c.rotate_test = False
  c.way, c.shot, c.query = 5, 1, 1       # query = K examples per class, as in MAML
  c.train_way = 0               # N of training episodes (0: way); protonet only (Snell et al.: 60)
  # Each training image's own random affine warp (Koch et al.'s distortions, no shear);
  # all zero (scale (1, 1)): none.
  c.train_affine = ml_collections.ConfigDict({"rotate_deg": 0.0, "scale": (1.0, 1.0),
                                              "translate": 0.0})
  c.test_shot, c.test_query = 1, 1
  # Test-time augmentation (meta_eval, jaxtl.meta.ensemble): each query's class
  # probabilities averaged over `views` copies of its task, the first as drawn, each other
  # with every image warped as train_affine warps; views=1: none.
  c.test_affine = ml_collections.ConfigDict({"views": 1, "rotate_deg": 0.0,
                                             "scale": (1.0, 1.0), "translate": 0.0})
  # Model.
  c.model = "conv4"
  # conv: auto (patches @ kernel on CPU, XLA's conv elsewhere) | xla | im2col
  c.model_kwargs = ml_collections.ConfigDict({"features": 64, "downsample": "stride",
                                              "conv": "auto"})
  # Algorithm.
  c.algorithm = "maml"
  c.inner_table = ml_collections.FieldReference(None, field_type=tuple)  # (regex, adapt?) rows
  c.inner_steps = 1
  c.inner_lr = 2.0
  c.inner_lr_mode = "fixed"     # fixed | per_param (Meta-SGD) | per_layer_step (MAML++)
  c.remat = False               # rematerialise inner steps (memory ~ constant in steps)
  c.task_batching = "auto"      # auto | vmap | map | unroll
  # Batch norm: transductive (MAML: every batch, support or query, with its own
  # statistics) | support (queries with the support set's: jaxtl.meta.algorithms)
  c.batch_norm = "transductive"
  # Outer loop.
  c.meta_optimizer = "adam"
  c.meta_lr = 1e-3
  c.meta_batch = 32
  c.num_devices = 0             # devices the meta-batch is split over (0: all; jaxtl.sharding)
  c.num_steps = 60000           # meta-iterations
  c.steps_per_call = 10         # meta-iterations per jitted call (lax.scan)
  c.seed = 0
  # Evaluation.
  c.test_inner_steps = 3
  c.test_inner_lr = 0.0         # 0: same as inner_lr
  c.test_backtrack = False      # halve a test step that does not lower the support loss
  c.support_steps = 0           # ProtoNets: Adam steps fine-tuning embedding and a head
  c.support_lr = 1e-3           # started at the prototypes, on each test task's support
  c.eval_steps = (0, 1, 3, 5, 10)
  c.eval_tasks = 600
  c.eval_batch = 50
  c.eval_seed = 12345
  # Bookkeeping.
  c.log_every = 500
  c.checkpoint_every = 2000
  return c


def get_config(variant: str = "omniglot_5w1s") -> ml_collections.ConfigDict:
  c = base()
  if variant == "sinusoid":
    c.dataset, c.model = "sinusoid", "mlp"
    c.model_kwargs = ml_collections.ConfigDict({"hidden": (40, 40)})
    c.shot, c.query, c.test_shot, c.test_query = 10, 10, 5, 100
    c.inner_lr, c.meta_batch, c.num_steps = 0.01, 25, 20000
    c.steps_per_call, c.log_every, c.checkpoint_every = 500, 2000, 5000
    c.test_inner_steps, c.eval_steps = 1, (0, 1, 5, 10)
  elif variant.startswith("omniglot_"):
    settings = {"5w1s": (5, 1), "5w5s": (5, 5), "20w1s": (20, 1), "20w5s": (20, 5)}
    key = variant[len("omniglot_"):]
    lake = key.endswith("_lake")
    key = key.removesuffix("_lake")
    mlp = key.endswith("_mlp")
    key = key.removesuffix("_mlp")
    if key not in settings:
      raise ConfigError(f"Unknown variant {variant!r}; valid: sinusoid, quick, "
                        + ", ".join(f"omniglot_{k}" for k in settings) + " (+ _mlp, _lake).")
    if lake:  # Lake et al.'s one-shot challenge: new alphabets, tasks within one alphabet
      c.class_split, c.num_val_alphabets, c.test_tasks = "lake", 5, "alphabet"
      c.source = "mirror"  # support and query drawers apart: the mirror's drawer order
    c.way, c.shot = settings[key]
    # MAML's Omniglot head: mean over the 2x2 map, kernel ~ N(0, 1). With a LeCun-initialised
    # head on the flat 256 features, 5 inner steps at alpha 2.0 overshoot (support loss
    # 3.3 -> 9.4 at initialisation) and 20-way meta-training stalls near 15%.
    c.model_kwargs.pool, c.model_kwargs.head_init_std = "mean", 1.0
    if mlp:  # MAML's non-convolutional row: 256-128-64-64, batch norm, ReLU
      c.model = "mlp"
      c.model_kwargs = ml_collections.ConfigDict({"hidden": (256, 128, 64, 64),
                                                  "batch_norm": True})
    c.query, c.test_shot, c.test_query = c.shot, c.shot, c.shot
    if c.way == 20:
      c.inner_steps, c.meta_batch, c.test_inner_steps = 5, 16, 5
  elif variant == "quick":
    c.model_kwargs.features = 8
    c.meta_batch, c.num_steps, c.steps_per_call = 4, 6, 2
    c.log_every = c.checkpoint_every = 2
    c.eval_tasks, c.eval_batch, c.eval_steps, c.test_inner_steps = 20, 10, (0, 1, 3), 1
  else:
    raise ConfigError(f"Unknown variant {variant!r}; valid: sinusoid, quick, omniglot_5w1s, "
                      "omniglot_5w5s, omniglot_20w1s, omniglot_20w5s.")
  return c
