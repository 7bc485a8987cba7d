"""A transaction fenced by the consumer group's generation (Kafka's KIP-447), for aiokafka.

A transactional ID per partition fences a partition's earlier owner: the new owner's producer
registers the ID, which aborts the old owner's open transaction and refuses its later ones. One
transaction for every partition a process owns cannot be fenced that way, since no other process
knows its ID. Kafka's answer, since 2.5, is to fence with the consumer group instead: the
transaction commits its input offsets with `TxnOffsetCommit` version 3, which carries the member's
ID and group generation, and the group coordinator refuses it (ILLEGAL_GENERATION,
UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID) once the group has moved on without that member
(https://cwiki.apache.org/confluence/display/KAFKA/KIP-447%3A+Producer+scalability+for+exactly+once+semantics).
A transaction whose offsets are refused is aborted, whatever it wrote.

aiokafka 0.14 sends `TxnOffsetCommit` version 0 only, which names no generation. `install()`
teaches its offset-commit handler version 3 for the producers registered with `fence()`, and
turns a refusal into an abortable error of the transaction. (aiokafka's own abortable path,
`TransactionManager.error_transaction`, forgets the transaction's partitions, after which the
abort sends no EndTxn and the transaction stays open on the broker until it times out: every
`read_committed` reader of those partitions would wait that long. This one keeps them.)
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiokafka.producer.sender as aiokafka_sender
from aiokafka import errors as kafka_errors
from aiokafka.producer.transaction_manager import TransactionState
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import CompactArray, CompactString, Int16, Int32, Int64, Schema, TaggedFields

from ..errors import GenerationFenced

__all__ = ["GroupMember", "fence", "install", "unfence"]


@dataclass(frozen=True, slots=True)
class GroupMember:
    """Who commits a transaction's offsets: the consumer group member and its generation."""

    generation: int
    member_id: str
    group_instance_id: str | None = None


#: The group errors that mean "not this member, or not now": the transaction is aborted.
_FENCED_CODES = {
    kafka_errors.IllegalGenerationError.errno,
    kafka_errors.UnknownMemberIdError.errno,
    kafka_errors.RebalanceInProgressError.errno,
    82,  # FENCED_INSTANCE_ID (KIP-345): another process took over this static member's ID
}
#: What aiokafka's own handler retries (a coordinator moving or loading, a timeout) or turns into
#: `ProducerFenced` (INVALID_PRODUCER_EPOCH), as for version 0. Any other error is made abortable
#: here: aiokafka's handler raises the ones it does not know, which ends its sender for good.
_AIOKAFKAS = {
    kafka_errors.CoordinatorNotAvailableError.errno,
    kafka_errors.NotCoordinatorError.errno,
    kafka_errors.RequestTimedOutError.errno,
    kafka_errors.CoordinatorLoadInProgressError.errno,
    kafka_errors.UnknownTopicOrPartitionError.errno,
    kafka_errors.InvalidProducerEpoch.errno,
}
#: PRODUCER_FENCED (KIP-588), which aiokafka 0.14 does not know: a newer producer has the ID.
_PRODUCER_FENCED = 90
#: Names of the codes aiokafka has no class for.
_NAMES = {82: "FENCED_INSTANCE_ID", _PRODUCER_FENCED: "PRODUCER_FENCED"}


class TxnOffsetCommitResponse_v3(Response):  # type: ignore[misc]
    API_KEY = 28
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("topics", CompactArray(
            ("name", CompactString("utf-8")),
            ("partitions", CompactArray(("partition_index", Int32), ("error_code", Int16), ("tags", TaggedFields))),
            ("tags", TaggedFields),
        )),
        ("tags", TaggedFields),
    )


class TxnOffsetCommitRequest_v3(RequestStruct):  # type: ignore[misc]
    """Kafka's `TxnOffsetCommitRequest.json`, version 3 (the first flexible one, KIP-447's)."""

    FLEXIBLE_VERSION = True
    API_KEY = 28
    API_VERSION = 3
    RESPONSE_TYPE = TxnOffsetCommitResponse_v3
    SCHEMA = Schema(
        ("transactional_id", CompactString("utf-8")),
        ("group_id", CompactString("utf-8")),
        ("producer_id", Int64),
        ("producer_epoch", Int16),
        ("generation_id", Int32),
        ("member_id", CompactString("utf-8")),
        ("group_instance_id", CompactString("utf-8")),
        ("topics", CompactArray(
            ("name", CompactString("utf-8")),
            ("partitions", CompactArray(
                ("partition_index", Int32),
                ("committed_offset", Int64),
                ("committed_leader_epoch", Int32),
                ("committed_metadata", CompactString("utf-8")),
                ("tags", TaggedFields),
            )),
            ("tags", TaggedFields),
        )),
        ("tags", TaggedFields),
    )


class TxnOffsetCommitRequest(Request[TxnOffsetCommitRequest_v3]):  # type: ignore[misc]
    API_KEY = 28

    def __init__(self, fields: tuple[Any, ...]) -> None:
        self._fields = fields

    def build(self, request_struct_class: type[TxnOffsetCommitRequest_v3]) -> TxnOffsetCommitRequest_v3:
        return request_struct_class(*self._fields)


#: Transactional ID -> where its transactions' offsets come from (`fence`).
_MEMBERS: dict[str, Callable[[], GroupMember]] = {}
_INSTALLING = threading.Lock()
_INSTALLED: list[bool] = []


def fence(transactional_id: str, member: Callable[[], GroupMember]) -> None:
    """Commit the offsets of `transactional_id`'s transactions as `member()` says at each commit."""
    install()
    _MEMBERS[transactional_id] = member


def unfence(transactional_id: str) -> None:
    _MEMBERS.pop(transactional_id, None)


def install() -> None:
    """Teach aiokafka's transactional offset commit version 3 for fenced producers (once)."""
    with _INSTALLING:
        if _INSTALLED:
            return
        handler = aiokafka_sender.TxnOffsetCommitHandler
        handler.create_request = _wrap_create(handler.create_request)
        handler.handle_response = _wrap_handle(handler.handle_response)
        _INSTALLED.append(True)


def _wrap_create(create: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def create_request(self: Any) -> Any:
        txn = self._sender._txn_manager
        member = _MEMBERS.get(txn.transactional_id)
        if member is None:
            return create(self)
        who = member()
        topics: dict[str, list[tuple[int, int, int, str, dict[int, bytes]]]] = collections.defaultdict(list)
        for tp, offset in sorted(self._offsets.items()):
            topics[tp.topic].append((tp.partition, offset.offset, -1, offset.metadata, {}))
        return TxnOffsetCommitRequest((
            txn.transactional_id, self._group_id, txn.producer_id, txn.producer_epoch,
            who.generation, who.member_id, who.group_instance_id,
            [(topic, partitions, {}) for topic, partitions in topics.items()], {},
        ))

    return create_request


class _Errors:
    """A version-3 response as the handler reads version 0's: (topic, [(partition, error)])."""

    def __init__(self, response: Any) -> None:
        self.errors = [(topic, [(p, code) for p, code, _ in partitions]) for topic, partitions, _ in response.topics]


def _wrap_handle(handle: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def handle_response(self: Any, response: Any) -> Any:
        if getattr(response, "API_VERSION", 0) < 3:
            return handle(self, response)
        plain = _Errors(response)
        for _, partitions in plain.errors:
            for _, code in partitions:
                if code == 0 or code in _AIOKAFKAS:
                    continue
                if code == _PRODUCER_FENCED:
                    raise kafka_errors.ProducerFenced()
                name = _NAMES.get(code) or kafka_errors.for_code(code).__name__
                if code in _FENCED_CODES:
                    error: Exception = GenerationFenced(
                        f"the group coordinator refused the transaction's offsets ({name}): the group has moved"
                        " on without this member")
                else:
                    error = kafka_errors.KafkaError(f"the transaction's offsets were refused: {name} ({code})")
                _abortable(self._sender._txn_manager, error)
                return None
        return handle(self, plain)

    return handle_response


def _abortable(txn: Any, error: Exception) -> None:
    """Fail the pending offset commit with `error` and leave the transaction abortable, its
    partitions kept, so that the abort that follows ends it on the broker."""
    txn._transition_to(TransactionState.ABORTABLE_ERROR)
    for _, _, future in txn._pending_txn_offsets:
        if not future.done():
            future.set_exception(error)
    txn._pending_txn_offsets.clear()
