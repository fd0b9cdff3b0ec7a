"""The jobs: each command's config, orchestration, evaluation and report sections, composed
from the method packages and the core. Only the CLI imports this layer."""
