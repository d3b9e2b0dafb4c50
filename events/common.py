"""Field types shared by the contract's messages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

MAX_QUANTITY = 1_000_000
MAX_QUEUE_LIMIT = 1_000_000_000  # a policy's cap on a SKU's queued units
MAX_LINES_PER_ORDER = 500
MAX_ID_LENGTH = 64
MAX_MESSAGE_BYTES = 1024 * 1024

# Printable: no C0/C1 control characters (tabs and newlines included), 1 to 64 of them.
PRINTABLE_PATTERN = r"^[^\x00-\x1F\x7F-\x9F]+$"


def _rfc3339_text(value: object) -> object:
    """JSON carries times as text; a bare number is not a business time."""
    if isinstance(value, str | datetime):
        return value
    raise ValueError("must be an RFC 3339 date-time string with a zone")


def _to_utc(value: datetime) -> datetime:
    """Business times are compared and bucketed in UTC, whatever zone they came in."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None


Identifier = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=PRINTABLE_PATTERN),
]
Quantity = Annotated[int, Field(strict=True, ge=1, le=MAX_QUANTITY)]
BusinessTime = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339_text),
    AfterValidator(_to_utc),
    Field(description="RFC 3339 date-time with a zone; business time, compared in UTC."),
]


class ContractModel(BaseModel):
    """Tolerant reader: unknown fields are ignored, known ones are validated strictly."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)
