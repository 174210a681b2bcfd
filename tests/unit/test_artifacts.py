from __future__ import annotations

import io
import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from mnist_backend.artifacts import load_artifact
from mnist_backend.errors import (
    ArchitectureMismatchError,
    ArtifactError,
    ArtifactIntegrityError,
    ArtifactMissingError,
    CorruptArtifactError,
    ModelCardError,
    UnsafeArtifactError,
)
from mnist_backend.models.convnet import ConvNet

WriteModelDir = Callable[..., Path]


def _saved(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _seeded_state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return ConvNet().state_dict()


class _RunsShellCommand:
    """Unpickling this object would run a shell command that creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return (os.system, (f"touch {self.marker}",))


class _OpensFileForWriting:
    """Unpickling this object would create a file through builtins.open."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return (open, (str(self.marker), "w"))


def test_load_artifact_returns_eval_model_holding_the_saved_tensors(
    model_dir: Path,
) -> None:
    expected = _seeded_state_dict()
    card = json.loads((model_dir / "model_card.json").read_text(encoding="utf-8"))

    loaded = load_artifact(model_dir)

    loaded_tensors = loaded.model.state_dict()
    assert (loaded.model_version, loaded.temperature, loaded.model.training) == (
        card["model_version"],
        card["calibration"]["temperature"],
        False,
    )
    assert (loaded.card, loaded.sha256) == (card, card["artifact"]["sha256"])
    assert loaded_tensors.keys() == expected.keys()
    assert all(torch.equal(loaded_tensors[name], expected[name]) for name in expected)


def test_load_artifact_rejects_missing_artifact_file(model_dir: Path) -> None:
    (model_dir / "convnet.pt").unlink()

    with pytest.raises(ArtifactMissingError) as caught:
        load_artifact(model_dir)

    assert (
        caught.value.detail
        == f"Model artifact {model_dir / 'convnet.pt'} does not exist."
    )


def test_load_artifact_rejects_missing_model_card(model_dir: Path) -> None:
    (model_dir / "model_card.json").unlink()

    with pytest.raises(ModelCardError) as caught:
        load_artifact(model_dir)

    assert caught.value.detail == f"No model card at {model_dir / 'model_card.json'}."


def test_load_artifact_checks_checksum_before_deserialising(
    write_model_dir: WriteModelDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = write_model_dir(card_changes={"artifact": {"sha256": "ab" * 32}})
    load_calls: list[object] = []
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: load_calls.append(args))

    with pytest.raises(ArtifactIntegrityError) as caught:
        load_artifact(model_dir)

    assert caught.value.detail.startswith("Model artifact convnet.pt has SHA-256 ")
    assert caught.value.detail.endswith(f"but its model card records {'ab' * 32}.")
    assert load_calls == []


def test_load_artifact_rejects_corrupt_bytes_with_matching_checksum(
    write_model_dir: WriteModelDir,
) -> None:
    model_dir = write_model_dir(payload=b"PK\x03\x04 definitely not a zip archive")

    with pytest.raises(CorruptArtifactError) as caught:
        load_artifact(model_dir)

    assert caught.value.detail == (
        "Model artifact convnet.pt is not a readable torch state dict."
    )


def test_load_artifact_rejects_truncated_artifact(
    write_model_dir: WriteModelDir,
) -> None:
    truncated = _saved(_seeded_state_dict())[:5000]
    model_dir = write_model_dir(payload=truncated)

    with pytest.raises(CorruptArtifactError):
        load_artifact(model_dir)


# Plain pickles use a newer protocol than torch writes; torch warns, then refuses.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize(
    "payload_class",
    [
        pytest.param(_RunsShellCommand, id="os-system"),
        pytest.param(_OpensFileForWriting, id="builtins-open"),
    ],
)
@pytest.mark.parametrize(
    "serialise",
    [
        pytest.param(_saved, id="torch-save"),
        pytest.param(pickle.dumps, id="plain-pickle"),
    ],
)
def test_load_artifact_never_runs_code_in_a_pickle(
    write_model_dir: WriteModelDir,
    tmp_path: Path,
    payload_class: type[_RunsShellCommand | _OpensFileForWriting],
    serialise: Callable[[object], bytes],
) -> None:
    marker = tmp_path / "payload-ran"
    payload = serialise({"features.0.0.weight": payload_class(marker)})
    model_dir = write_model_dir(payload=payload)

    with pytest.raises(UnsafeArtifactError) as caught:
        load_artifact(model_dir)

    assert caught.value.detail == (
        "Model artifact convnet.pt holds objects other than tensors; "
        "refusing to load it."
    )
    assert not marker.exists()


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        pytest.param(
            [torch.zeros(3)],
            "Model artifact convnet.pt holds a list, not a state dict.",
            id="list-of-tensors",
        ),
        pytest.param(
            {"features.0.0.weight": 3},
            "Model artifact convnet.pt maps features.0.0.weight "
            "to something other than a tensor.",
            id="number-instead-of-tensor",
        ),
    ],
)
def test_load_artifact_rejects_payload_that_is_not_a_tensor_mapping(
    write_model_dir: WriteModelDir, payload: object, detail: str
) -> None:
    model_dir = write_model_dir(payload=_saved(payload))

    with pytest.raises(UnsafeArtifactError) as caught:
        load_artifact(model_dir)

    assert caught.value.detail == detail


def _without_final_bias(state: dict[str, torch.Tensor]) -> None:
    del state["classifier.5.bias"]


def _with_extra_tensor(state: dict[str, torch.Tensor]) -> None:
    state["classifier.6.weight"] = torch.zeros(10)


def _with_wider_output(state: dict[str, torch.Tensor]) -> None:
    state["classifier.5.weight"] = torch.zeros(11, 128)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        pytest.param(_without_final_bias, "missing: classifier.5.bias", id="missing"),
        pytest.param(
            _with_extra_tensor, "unexpected: classifier.6.weight", id="unexpected"
        ),
        pytest.param(
            _with_wider_output,
            "misshapen: classifier.5.weight (11, 128) (expected (10, 128))",
            id="misshapen",
        ),
    ],
)
def test_load_artifact_names_tensors_that_do_not_fit_the_architecture(
    write_model_dir: WriteModelDir,
    change: Callable[[dict[str, torch.Tensor]], None],
    problem: str,
) -> None:
    state = _seeded_state_dict()
    change(state)
    model_dir = write_model_dir(payload=_saved(state))

    with pytest.raises(ArchitectureMismatchError) as caught:
        load_artifact(model_dir)

    assert (
        caught.value.detail == f"The state dict does not fit convnet-bn-v1; {problem}"
    )


@pytest.mark.parametrize(
    ("card_changes", "error_type", "detail_end"),
    [
        pytest.param(
            {"artifact": {"file": "../outside.pt"}},
            ModelCardError,
            "Model card names artifact file '../outside.pt'; "
            "expected a bare file name.",
            id="artifact-path-escapes-folder",
        ),
        pytest.param(
            {"architecture": {"name": "resnet-18"}},
            ArchitectureMismatchError,
            "declares architecture 'resnet-18'; this service runs 'convnet-bn-v1'.",
            id="other-architecture",
        ),
        pytest.param(
            {"calibration": {"temperature": 0}},
            ModelCardError,
            "lacks a positive 'calibration.temperature'.",
            id="zero-temperature",
        ),
    ],
)
def test_load_artifact_rejects_model_card_it_cannot_trust(
    write_model_dir: WriteModelDir,
    card_changes: dict[str, object],
    error_type: type[ArtifactError],
    detail_end: str,
) -> None:
    model_dir = write_model_dir(card_changes=card_changes)

    with pytest.raises(error_type) as caught:
        load_artifact(model_dir)

    assert caught.value.detail.endswith(detail_end)
