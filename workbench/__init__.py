"""Fine-Tune Workbench: datasets, configs, models and fine-tuning jobs run as papermill notebooks."""

__version__ = "0.1.0"
