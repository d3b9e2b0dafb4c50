"""Reading `allocation-decisions` as typed models, with a consumer group of the caller's own.

One faststream subscriber per group; the handlers registered on it are called in the order
they were registered, each for the decision types it asked for. Decisions of a type this
version does not know are skipped (the contract adds types; a reader ignores them), unknown
fields are ignored. Delivery is at least once: the offset is committed after the handlers
ran, so a crash repeats the decisions since the last commit; dedupe on `decision_id`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from faststream import AckPolicy
from faststream.kafka import KafkaBroker, Topic
from faststream.kafka.annotations import KafkaMessage

from events.decisions import AllocationDecision, Decision
from fulfillment_client.messages import UnreadableDecisionError, read_decision

log = logging.getLogger(__name__)

DecisionT = TypeVar("DecisionT", bound=Decision)
DecisionHandler = Callable[[DecisionT], Awaitable[None]]
AnyDecisionHandler = Callable[[AllocationDecision], Awaitable[None]]
StartAt = Literal["earliest", "latest"]


@dataclass(frozen=True)
class _Registration:
    kinds: frozenset[type[Decision]] | None  # None: every decision
    handler: Callable[[Any], Awaitable[None]]


class DecisionSubscriber:
    """The decisions a consumer group reads, handed to typed handlers.

    Register handlers before the broker starts (`on`, `on_every`); the subscriber is part of
    the broker, started and stopped with it."""

    def __init__(
        self,
        broker: KafkaBroker,
        *,
        group_id: str,
        topic: str,
        start_at: StartAt = "earliest",
        ack_policy: AckPolicy = AckPolicy.ACK,
    ) -> None:
        """`group_id`: the reading service's own group (two services sharing one would split
        the decisions between them). `start_at`: where a group without committed offsets
        begins; `earliest` reads the topic's retained history once, so nothing decided before
        the first start is missed. `ack_policy`: ACK commits after the handlers, even when one
        raised (logged, not retried); NACK_ON_ERROR retries that decision until it succeeds,
        holding up its partition meanwhile."""
        if not group_id:
            raise ValueError("a decisions subscriber needs a consumer group of its own")
        self.group_id = group_id
        self.topic = topic
        self._registrations: list[_Registration] = []
        # declare=False: the service creates its topics with their partition counts; a
        # reader must never create the decisions topic first, with faststream's one partition.
        self._subscriber = broker.subscriber(
            Topic(topic, declare=False),
            group_id=group_id,
            auto_offset_reset=start_at,
            ack_policy=ack_policy,
            title=f"{topic}:{group_id}",
            description="Fulfillment's decisions, read by this service's consumer group.",
        )
        self._subscriber(self._dispatch)

    def on(
        self, kind: type[DecisionT]
    ) -> Callable[[DecisionHandler[DecisionT]], DecisionHandler[DecisionT]]:
        """Decorator: `handler` gets every decision of type `kind`, as that model."""

        def register(handler: DecisionHandler[DecisionT]) -> DecisionHandler[DecisionT]:
            self._registrations.append(_Registration(frozenset({kind}), handler))
            return handler

        return register

    def on_every(self, handler: AnyDecisionHandler) -> AnyDecisionHandler:
        """Decorator: `handler` gets every decision of a known type (match on its class)."""
        self._registrations.append(_Registration(None, handler))
        return handler

    async def _dispatch(self, message: KafkaMessage) -> None:
        """One message from the topic, to the handlers that want its type."""
        try:
            decision = read_decision(message.body)
        except UnreadableDecisionError as error:
            record = message.raw_message
            log.error(
                "skipped a message that is no decision on %s-%s at offset %s: %s",
                getattr(record, "topic", self.topic),
                getattr(record, "partition", "?"),
                getattr(record, "offset", "?"),
                error,
            )
            return
        if decision is None:
            return  # a type this version does not know: the contract says to ignore it
        for registration in self._registrations:
            if registration.kinds is None or type(decision) in registration.kinds:
                await registration.handler(decision)
