"""jaxtl: transfer learning and meta-learning in JAX."""
import setuptools

setuptools.setup(
    name="jaxtl",
    version="0.1.0",
    description="Transfer learning (fine-tuning through optax partition masks) "
    "and meta-learning (MAML family, ProtoNets) in JAX/Flax.",
    # The library only: the launchers (experiments/), benchmarks/ and tests/ run from the
    # checkout (`python -m experiments.X`), so no top-level `experiments` lands in
    # site-packages to collide with another project's.
    packages=setuptools.find_packages(include=["jaxtl", "jaxtl.*"]),
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.4.31",  # jax.lax.map(batch_size=)
        "flax>=0.8.5",
        "optax>=0.2.3",
        "orbax-checkpoint>=0.6",
        "ml-collections>=0.1.1",
        "absl-py>=1.4",
        "numpy>=1.24",
        "tensorflow-datasets>=4.9.4",
        "importlib_resources>=5",  # TFDS's download path imports it and does not require it
        "scikit-learn>=1.3",  # ships the embedded 8x8 digits; no download
        "scipy>=1.10",  # corruptions (ndimage), t-intervals
        "pillow>=9.1",  # USPS and Omniglot resizing
        "tensorboardX>=2.6",  # TensorBoard event files without TensorFlow
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-xdist>=3", "matplotlib>=3.7", "filelock>=3"],
        "plots": ["matplotlib>=3.7"],
        # Benchmarks against PyTorch and the torchvision fixtures' script only; jaxtl never
        # imports them (it reads .pth and .safetensors files itself: jaxtl/state_dict.py).
        "peers": ["torch>=2.1", "torchvision>=0.16", "safetensors>=0.4"],
    },
)
