"""The one exception the services raise on purpose: a refusal the caller should see as it is."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A request refused for a reason the caller can act on, with the HTTP status the API answers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "code": self.code, "message": self.message, "details": self.details}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServiceError:
        return cls(data["status"], data["code"], data["message"], data.get("details"))
