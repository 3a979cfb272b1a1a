"""Fine-Tune Workbench: datasets, configs, models and fine-tuning jobs run as papermill notebooks."""

import warnings as _warnings

__version__ = "0.1.0"

# peft (0.21) asks transformers 5 for `is_gradient_checkpointing` on every adapter load; the warning is
# theirs to fix and nothing a user can act on, yet it lands in every job log and CLI export
_warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
