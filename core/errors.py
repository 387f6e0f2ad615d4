"""Typed errors. The CLI turns a DziriError into one line and a non-zero exit;
the API turns it into JSON {"error": {"code", "message"}} with `http_status`."""


class DziriError(Exception):
    code = "error"
    http_status = 500


class ConfigError(DziriError):
    """The configuration file or an environment override is invalid."""

    code = "config_error"


class PluginError(DziriError):
    """A plugin is unknown, failed to import, or does not satisfy its contract."""

    code = "plugin_error"


class ModelError(DziriError):
    """The model file is missing, corrupt or cannot be loaded."""

    code = "model_error"
    http_status = 503


class BackendError(DziriError):
    """The inference backend failed or could not be reached."""

    code = "backend_unavailable"
    http_status = 503


class StoreError(DziriError):
    """The conversation store cannot be opened or written."""

    code = "store_unavailable"
    http_status = 503


class TranslatorError(DziriError):
    code = "translator_error"
    http_status = 502


class TrainingError(DziriError):
    """A training, export or evaluation step cannot go on (a wrong base model, a missing GPU)."""

    code = "training_error"


class ValidationError(DziriError):
    """User input is invalid (empty message, too long, bad field)."""

    code = "invalid_input"
    http_status = 400


class MessageTooLongError(ValidationError):
    code = "message_too_long"


class NotFoundError(DziriError):
    """The object does not exist, or belongs to another user (never say which)."""

    code = "not_found"
    http_status = 404


class ConflictError(DziriError):
    """A unique value (username, email) is already taken."""

    code = "conflict"
    http_status = 409
