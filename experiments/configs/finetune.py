"""Pre-training and fine-tuning configs; `get_config("VARIANT")`.

    python -m experiments.pretrain --config=experiments/configs/finetune.py:digits_source \
        --workdir=runs/digits_source
    python -m experiments.finetune --config=experiments/configs/finetune.py:digits \
        --workdir=runs/digits_surgical --config.init_from=runs/digits_source \
        --config.strategy=surgical --config.blocks=block1

Variants:
  digits_source / digits: embedded 8x8 digits (no download). Source task: digits 0-4,
      target task: digits 5-9 from 25 labelled examples (5 per class), ResNet.
  mnist_source / mnist: MNIST 0-4 -> 5-9 with 1000 target examples (surgical fine-tuning's
      target size), ResNet; needs the MNIST mirror or TFDS.
  quick_source / quick: a few steps of the digits variants, for tests.
  folder: your own images, used whole (--config.dataset=/path/with/train/and/test
      sub-folders of class sub-folders; --config.num_train / num_val limit it).
  torchvision: fine-tune a torchvision / timm ResNet's weights (--config.init_from=
      resnet18.pth or .safetensors; --config.model=torchvision_resnet50 for another
      depth): images resized to model_kwargs.image_size (224, as ImageNet weights
      expect), grey replicated to 3 channels, ImageNet mean and std; batch norm frozen.
      Every class of the target; all its training images but 100 held out for
      validation. Folder images are read in colour as they are, short side resized to
      224 and the centre cropped (folder_size). The default target is the embedded
      digits; --config.dataset names yours.
  torchvision_quick: a few steps of it on a narrow net at 32x32 (tests).
"""
import ml_collections

from jaxtl import objectives
from jaxtl.errors import ConfigError


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Data.
  c.dataset = "digits"          # digits (embedded) | mnist | omniglot
  c.data_dir = ""               # offline mirrors; else $JAXTL_DATA_DIR
  c.source = "auto"             # auto | tfds | mirror | embedded
  c.train_split = "train"
  c.test_split = "test"
  c.classes = ()                # keep these classes, relabelled 0..n-1 (empty: all)
  c.num_train = 0               # labelled training examples, class-balanced (0: all but val)
  c.num_val = 0                 # held out from the training split to pick hyperparameters
  c.data_seed = 0
  c.folder_channels = 1         # a folder's images: 1 (grey) | 3 (RGB)
  c.folder_polarity = "auto"    # auto: light backgrounds inverted (ink light on dark, as
                                # MNIST) | dark_ink: all inverted | light_ink: kept as read
  c.folder_size = 0             # 0: every image at the first one's size | S: short side
                                # resized to S, centre crop S x S (torchvision's eval crop)
  # Model.
  c.model = "resnet"            # resnet | conv4 | mlp
  c.model_kwargs = ml_collections.ConfigDict({"widths": (16, 32, 64)})
  c.batch_norm = "train"        # train: batch statistics, running averages updated;
                                # frozen: running averages, kept fixed
  # What a step asks of the network (jaxtl/objectives): supervised | rotation | simclr | mae,
  # and the objectives' options (augmentations, temperature, mask_ratio, ...).
  c.objective = "supervised"
  c.objective_kwargs = ml_collections.ConfigDict(objectives.OPTIONS)
  # After training, batch norm's running statistics replaced by those of this many clean
  # training images (0: kept), so that transfer does not normalise clean images with
  # statistics of masked or augmented ones.
  c.clean_batch_stats = 0
  # What adapts (see jaxtl/finetune/strategies.py).
  c.init_from = ""              # workdir of a finished pre-training run
  c.reinit = (r"^head/",)       # regexes of leaves re-initialised instead of loaded
  c.strategy = "full"
  c.blocks = ("block1",)        # surgical: names or first / middle / last / head
  c.freeze_k = 1                # freeze_first_k
  c.lr_decay = 0.5              # layerwise_lr: scale = lr_decay ** (blocks above)
  c.block_lr_scales = ml_collections.ConfigDict()  # layerwise_lr: explicit {block: scale}
  # Frozen leading blocks (batch norm frozen, no augmentation) run once per dataset, not
  # at every step: the same numbers up to float rounding. False only to time the cache.
  c.cache_frozen_prefix = True
  c.lp_fraction = 0.5           # lp_ft: share of the steps spent on the linear probe
  c.l2sp_alpha = 0.01           # l2sp: weight of ||w - w0||^2
  c.l2sp_beta = 0.0             # l2sp: weight of ||w||^2 on re-initialised leaves
  c.pattern_table = ml_collections.FieldReference(None, field_type=tuple)  # custom
  c.auto_period = 0             # auto_rgn / auto_snr: re-measure every N steps (0: an epoch)
  c.auto_measure_steps = 4      # ... from the gradients of the first N steps of each period
  c.task_weights = ()           # multi-task: loss weight per task (empty: all 1)
  c.snr_threshold = 0.1         # auto_snr: tensors below this fraction of the max SNR are off
  # Optimisation.
  c.optimizer = "adam"          # adam | adamw | sgd (jaxtl.finetune.optim: one meaning per field)
  c.learning_rate = 1e-3
  c.momentum = 0.9
  c.weight_decay = 0.0           # L2 for adam and sgd, decoupled for adamw (jaxtl.finetune.optim)
  c.batch_size = 64
  c.num_devices = 0             # devices the batch is split over (0: all; jaxtl.sharding)
  c.num_steps = 500
  c.seed = 0
  # Bookkeeping.
  c.log_every = 100
  c.eval_every = 0              # validation accuracy in the logs every N steps (0: never)
  c.checkpoint_every = 250
  c.eval_batch_size = 500
  return c


def get_config(variant: str = "digits") -> ml_collections.ConfigDict:
  c = base()
  if variant in ("digits_source", "quick_source"):
    c.classes = (0, 1, 2, 3, 4)
    c.num_val = 100
    c.num_steps = 600
  elif variant in ("digits", "quick"):
    c.classes = (5, 6, 7, 8, 9)
    c.num_train, c.num_val = 25, 100
    c.num_steps, c.batch_size = 100, 25
    c.log_every = c.checkpoint_every = 50
  elif variant == "mnist_source":
    c.dataset, c.classes, c.num_val = "mnist", (0, 1, 2, 3, 4), 1000
    c.num_steps, c.batch_size = 2000, 128
    c.checkpoint_every = 500
  elif variant == "folder":
    c.num_train, c.num_val = 0, 0  # every image of the train folder; no validation split
    c.num_steps, c.batch_size = 300, 32
    c.log_every = c.checkpoint_every = 100
  elif variant == "mnist":
    c.dataset, c.classes = "mnist", (5, 6, 7, 8, 9)
    c.num_train, c.num_val = 1000, 500
    c.num_steps, c.batch_size = 300, 50
  elif variant in ("torchvision", "torchvision_quick"):
    c.model = "torchvision_resnet18"
    c.model_kwargs = ml_collections.ConfigDict({"image_size": 224})
    c.batch_norm = "frozen"  # ImageNet's running statistics; small target batches
    c.folder_channels, c.folder_polarity, c.folder_size = 3, "light_ink", 224  # photos
    c.num_train, c.num_val = 0, 100  # every class; all training images but 100 for validation
    c.num_steps, c.batch_size = 100, 25
    c.log_every = c.checkpoint_every = 50
    if variant == "torchvision_quick":  # the shape of tests/fixtures/torchvision_basic.pth
      c.model_kwargs = ml_collections.ConfigDict(
          {"image_size": 32, "widths": (4, 8, 16, 16), "units": (2, 1, 1, 1)})
      c.num_steps, c.log_every, c.checkpoint_every = 6, 3, 3
  else:
    raise ConfigError(f"Unknown variant {variant!r}; valid: digits_source, digits, mnist_source, "
                      "mnist, folder, torchvision, torchvision_quick, quick_source, quick.")
  if variant.startswith("quick"):
    c.num_steps = 6
    c.log_every = c.checkpoint_every = 3
    c.model_kwargs.widths = (4, 8, 8)
  return c
