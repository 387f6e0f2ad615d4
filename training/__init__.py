"""The training pipeline: clean → translate → fine-tune → export → evaluate.

Each step is a `dziri` subcommand (see `training/cli.py` and docs/training.md); the
modules behind them import their heavy dependencies only when a step runs.
"""
