"""Experiment tracking with MLflow, as Kedro hooks that stay out of the nodes.

The nodes return their history and metrics as datasets; these hooks copy them into
an MLflow run. With ``tracking.enabled: false`` the hooks do nothing and MLflow is
never imported, so training runs where MLflow is not installed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node

logger = logging.getLogger(__name__)


def flatten_parameters(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Return nested parameters as ``{"training.augmentation.scale_min": "0.85"}``."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_parameters(value, prefix=f"{name}."))
        else:
            flat[name] = str(value)
    return flat


class MlflowTrackingHooks:
    """Opens one MLflow run per pipeline run and records what the nodes produce."""

    def __init__(self) -> None:
        self._enabled = False
        self._options: dict[str, Any] = {}
        self._project_path = Path.cwd()
        self._run_open = False

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        options = context.config_loader["tracking"].get("tracking", {})
        self._options = dict(options)
        self._enabled = bool(options.get("enabled", False))
        self._project_path = Path(context.project_path)

    @hook_impl
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline
    ) -> None:
        if not self._enabled:
            return
        import mlflow

        # MLflow refuses a plain file store without this switch; the default here is a
        # SQLite file, which needs no server either.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri(self._resolve_uri(self._options["tracking_uri"]))
        experiment = self._options["experiment_name"]
        if mlflow.get_experiment_by_name(experiment) is None:
            artifacts = self._project_path / self._options["artifact_location"]
            mlflow.create_experiment(
                experiment, artifact_location=artifacts.resolve().as_uri()
            )
        mlflow.set_experiment(experiment)
        mlflow.start_run(run_name=run_params.get("run_id") or None)
        self._run_open = True
        mlflow.set_tag(
            "kedro.pipeline", run_params.get("pipeline_name") or "__default__"
        )
        mlflow.set_tag("kedro.env", run_params.get("env") or "base")

    @hook_impl
    def before_node_run(self, node: Node, inputs: dict[str, Any]) -> None:
        if not self._run_open:
            return
        import mlflow

        parameters = {
            name.removeprefix("params:"): value
            for name, value in inputs.items()
            if name.startswith("params:")
        }
        flat = flatten_parameters(parameters)
        # A parameter group is logged by several nodes; MLflow refuses a second
        # write of the same key only when the value changes, which it never does.
        mlflow.log_params({key: value[:500] for key, value in flat.items()})

    @hook_impl
    def after_node_run(self, node: Node, outputs: dict[str, Any]) -> None:
        if not self._run_open:
            return
        import mlflow

        if "training_history" in outputs:
            for record in outputs["training_history"]:
                metrics = {k: float(v) for k, v in record.items() if k != "epoch"}
                mlflow.log_metrics(metrics, step=int(record["epoch"]))
        if "evaluation_metrics" in outputs:
            metrics = outputs["evaluation_metrics"]
            scalars = {
                k: float(v) for k, v in metrics.items() if isinstance(v, int | float)
            }
            mlflow.log_metrics(scalars)
            mlflow.log_dict(metrics, "evaluation_metrics.json")
        if "model_card" in outputs:
            mlflow.log_dict(outputs["model_card"], "model_card.json")
            mlflow.set_tag("model_version", outputs["model_card"]["model_version"])
        if "published_files" in outputs:
            published = outputs["published_files"]
            for name in published["files"]:
                mlflow.log_artifact(str(Path(published["model_dir"]) / name), "model")

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._end_run("FINISHED")

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._end_run("FAILED")

    def _end_run(self, status: str) -> None:
        if not self._run_open:
            return
        import mlflow

        mlflow.end_run(status=status)
        self._run_open = False

    def _resolve_uri(self, uri: str) -> str:
        """Anchor a relative ``sqlite:///`` path at the project, not the shell's CWD."""
        prefix = "sqlite:///"
        if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
            return prefix + str(self._project_path / uri.removeprefix(prefix))
        return uri
