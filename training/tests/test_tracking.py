"""The MLflow hooks against a real MLflow store in a temporary folder."""

from __future__ import annotations

from types import SimpleNamespace

import mlflow

from mnist_training.tracking import MlflowTrackingHooks, flatten_parameters


def _context(tmp_path, enabled: bool) -> SimpleNamespace:
    options = {
        "enabled": enabled,
        "tracking_uri": "sqlite:///mlflow.db",
        "artifact_location": "mlartifacts",
        "experiment_name": "test-experiment",
    }
    return SimpleNamespace(
        config_loader={"tracking": {"tracking": options}}, project_path=tmp_path
    )


def _node(name: str) -> SimpleNamespace:
    return SimpleNamespace(name=name)


def test_flatten_parameters_joins_nested_keys_with_dots():
    flat = flatten_parameters(
        {"training": {"epochs": 2, "augmentation": {"scale_min": 0.9}}}
    )

    assert flat == {"training.epochs": "2", "training.augmentation.scale_min": "0.9"}


def test_hooks_record_parameters_epochs_metrics_and_the_card(tmp_path):
    hooks = MlflowTrackingHooks()
    hooks.after_context_created(_context(tmp_path, enabled=True))
    history = [
        {"epoch": 1, "train_loss": 0.5, "validation_accuracy": 0.9, "seconds": 1.0},
        {"epoch": 2, "train_loss": 0.3, "validation_accuracy": 0.95, "seconds": 1.0},
    ]

    hooks.before_pipeline_run(
        {"run_id": None, "pipeline_name": None, "env": "test"}, None
    )
    hooks.before_node_run(_node("train"), {"params:training": {"epochs": 2}, "data": 1})
    hooks.after_node_run(_node("train"), {"training_history": history})
    hooks.after_node_run(
        _node("evaluate"), {"evaluation_metrics": {"test_accuracy": 0.97}}
    )
    hooks.after_node_run(_node("card"), {"model_card": {"model_version": "v7"}})
    hooks.after_pipeline_run()

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.get_experiment_by_name("test-experiment")
    (run,) = mlflow.search_runs([experiment.experiment_id], output_format="list")
    client = mlflow.MlflowClient()
    accuracy = client.get_metric_history(run.info.run_id, "validation_accuracy")
    assert run.info.status == "FINISHED"
    assert run.data.params == {"training.epochs": "2"}
    assert [(m.step, m.value) for m in accuracy] == [(1, 0.9), (2, 0.95)]
    assert run.data.metrics["test_accuracy"] == 0.97
    assert run.data.tags["model_version"] == "v7"


def test_hooks_do_nothing_when_tracking_is_disabled(tmp_path):
    hooks = MlflowTrackingHooks()
    hooks.after_context_created(_context(tmp_path, enabled=False))

    hooks.before_pipeline_run({"run_id": None}, None)
    hooks.after_node_run(_node("train"), {"training_history": [{"epoch": 1}]})
    hooks.after_pipeline_run()

    assert list(tmp_path.iterdir()) == []
