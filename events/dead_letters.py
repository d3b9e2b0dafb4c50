"""Messages the service could not apply, on `fulfillment-dlq` (key: the original key)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from events.common import ContractModel


class DeadLetter(ContractModel):
    source_topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    key: str | None = Field(description="The original key, decoded as UTF-8 (None if absent).")
    error: str = Field(description="Why the message was not applied, and what to do about it.")
    payload: str = Field(description="The original bytes, as UTF-8 or base64 (see encoding).")
    payload_encoding: Literal["utf-8", "base64"] = "utf-8"
    failed_at: datetime
