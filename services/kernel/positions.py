"""Positions in intake's log, as sku-commands and the Sku aggregate number them.

Three numbers are easy to mix up: a Kafka offset (a place in one partition, only a hint
here), a place in a SKU's backorder queue, and where a command stands in intake's log. This
module is the last one. Intake's relay numbers each sku-commands message `notification id ×
1000 + the SKU's index in that notification` (an order has at most 500 lines, so at most
500 SKUs); allocation numbers each command of a message `message position × 1000 + the
command's index in the message`. Both grow with intake's log, so a SKU can refuse any
command at or below the last one it applied, whichever copy of a message brings it.
"""

from __future__ import annotations

from dataclasses import dataclass

PER_NOTIFICATION = 1000  # SKU messages of one notification (at most 500: lines of an order)
PER_MESSAGE = 1000  # commands of one SKU message (at most 500: lines of an order)


@dataclass(frozen=True, order=True)
class IntakePosition:
    """One command's place in intake's log: notification, SKU message in it, command in that."""

    notification_id: int
    message: int = 0
    command: int = 0

    def __post_init__(self) -> None:
        if not (0 <= self.message < PER_NOTIFICATION and 0 <= self.command < PER_MESSAGE):
            raise ValueError(f"position out of range: {self}")

    @property
    def message_position(self) -> int:
        """The sku-commands message's `position` (and `source-position` header)."""
        return self.notification_id * PER_NOTIFICATION + self.message

    @property
    def command_position(self) -> int:
        """What the Sku aggregate records and compares: strictly increasing per SKU."""
        return self.message_position * PER_MESSAGE + self.command

    @classmethod
    def of_message(cls, message_position: int, command: int = 0) -> IntakePosition:
        notification_id, message = divmod(message_position, PER_NOTIFICATION)
        return cls(notification_id, message, command)
