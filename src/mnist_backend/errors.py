"""Domain exceptions raised by the core; the HTTP layer maps them to responses.

Each exception carries a stable machine-readable ``code``. Nothing here knows about
HTTP: ``api/handlers.py`` decides which status each one becomes.
"""

from __future__ import annotations


class MnistBackendError(Exception):
    """Base of every error the service raises on purpose."""

    code = "internal_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


# Errors in what a client sent.


class InvalidUploadError(MnistBackendError):
    """The upload cannot be turned into a model input."""

    code = "invalid_upload"


class UploadTooLargeError(InvalidUploadError):
    """The request body is larger than the upload limit."""

    code = "upload_too_large"


class ImageTooLargeError(InvalidUploadError):
    """The image header declares more pixels than the pixel limit."""

    code = "image_too_large"


class UnsupportedImageError(InvalidUploadError):
    """The upload is not an image in one of the accepted formats."""

    code = "unsupported_media_type"


class UndecodableImageError(InvalidUploadError):
    """The upload claims an accepted format but is truncated or corrupt."""

    code = "undecodable_image"


class NoDigitFoundError(InvalidUploadError):
    """The image decodes but holds no ink to classify (a blank canvas)."""

    code = "no_digit_found"


class NotMultipartError(InvalidUploadError):
    """The request body is not a well-formed multipart/form-data body."""

    code = "not_multipart"


class MissingFileError(InvalidUploadError):
    """The multipart body has no part under the expected field name."""

    code = "missing_file"


class EmptyUploadError(InvalidUploadError):
    """The request body, or the uploaded file in it, holds no bytes."""

    code = "empty_upload"


class TooManyFilesError(InvalidUploadError):
    """A batch request carries more files than the batch limit."""

    code = "too_many_files"


# Errors in the model artifact: the service keeps running but does not serve.


class ArtifactError(MnistBackendError):
    """A model artifact or its card cannot be trusted."""

    code = "invalid_artifact"


class ArtifactMissingError(ArtifactError):
    """The model directory lacks the artifact file the model card names."""

    code = "artifact_missing"


class CorruptArtifactError(ArtifactError):
    """The artifact matches its checksum but cannot be read as a state dict."""

    code = "artifact_corrupt"


class ArtifactIntegrityError(ArtifactError):
    """The artifact's bytes do not match the SHA-256 its model card records."""

    code = "artifact_checksum_mismatch"


class UnsafeArtifactError(ArtifactError):
    """The artifact is not a plain tensor state dict (for example a code pickle)."""

    code = "artifact_unsafe"


class ArchitectureMismatchError(ArtifactError):
    """The state dict's tensors do not fit the ConvNet architecture."""

    code = "architecture_mismatch"


class ModelCardError(ArtifactError):
    """The model card is missing, unreadable or lacks a required field."""

    code = "invalid_model_card"


class GoldenSetError(ArtifactError):
    """A candidate model classifies too few of the bundled golden digits correctly."""

    code = "golden_set_failed"


# Errors in the service's own configuration.


class ConfigurationError(MnistBackendError):
    """A setting has a value the service cannot start with."""

    code = "invalid_configuration"


# Errors in serving capacity.


class ModelUnavailableError(MnistBackendError):
    """No validated model is loaded, so predictions cannot be served."""

    code = "model_unavailable"


class OverloadedError(MnistBackendError):
    """The inference queue is full; the client should retry later."""

    code = "overloaded"

    def __init__(self, detail: str, *, retry_after_seconds: int = 1) -> None:
        super().__init__(detail)
        self.retry_after_seconds = retry_after_seconds


class DeadlineExceededError(MnistBackendError):
    """The request waited longer than its deadline for the model."""

    code = "deadline_exceeded"


class ShuttingDownError(MnistBackendError):
    """The process received SIGTERM and only finishes the requests in flight."""

    code = "shutting_down"


# Errors of the admin API (model reload and rollback).


class AdminTokenMissingError(MnistBackendError):
    """An admin request carries no bearer token."""

    code = "admin_token_missing"


class AdminTokenInvalidError(MnistBackendError):
    """An admin request carries a bearer token other than the configured one."""

    code = "admin_token_invalid"


class NoPreviousModelError(MnistBackendError):
    """A rollback was asked for, but no previous model is kept in memory."""

    code = "no_previous_model"


class ModelRefusedError(MnistBackendError):
    """A reload found a candidate model that failed its checks; the old one serves."""

    code = "model_refused"
