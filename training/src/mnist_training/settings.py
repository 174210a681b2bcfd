"""Kedro settings of the training project: hooks and configuration loading."""

from mnist_training.tracking import MlflowTrackingHooks

HOOKS = (MlflowTrackingHooks(),)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {"tracking": ["tracking*", "tracking*/**"]},
    # An environment overrides single parameters, not whole groups.
    "merge_strategy": {"parameters": "soft", "tracking": "soft"},
}
