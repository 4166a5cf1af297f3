"""Error types that map one-to-one to HTTP statuses (no I/O).

Anything the client got wrong raises a subclass of ``ClientError`` with a message that names
the problem; the HTTP layer turns it into ``{"error": message}`` with the class's status.
"""


class ServerError(Exception):
    status = 500


class ClientError(ServerError):
    status = 400


class InvalidInput(ClientError):
    status = 400


class NotFound(ClientError):
    status = 404


class MethodNotAllowed(ClientError):
    status = 405


class PayloadTooLarge(ClientError):
    status = 413


class UnsupportedMediaType(ClientError):
    status = 415


class NotReady(ServerError):
    status = 503


class ModelError(ServerError):
    """The model itself raised while predicting."""

    status = 500


class LoadError(Exception):
    """The model could not be loaded; ``reason`` is the one line the operator surfaces."""

    def __init__(self, reason: str, integrity: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.integrity = integrity
