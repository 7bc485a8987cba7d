"""Consumer group membership facts the rebalance listeners need (issue 16: rebalances move only what moves).

aiokafka 0.14 implements the eager group protocol only: its `ConsumerRebalanceListener` says the
interface "does not support incremental assignment", and it ships no cooperative-sticky assignor
(KIP-429), so every rebalance revokes every partition of every member. What it does support is
static membership (KIP-345, `group_instance_id`): a member that restarts under the same ID within
the session timeout is given its partitions back without a rebalance. Engines and workers therefore
keep what a rebalance revoked until the assignment that follows, and take back whatever it returns
when nobody else can have owned it in between (`kept_across`).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from .group_fencing import GroupMember

__all__ = ["GroupDescription", "describe_group", "generation", "kept_across", "member", "rejoin"]


def generation(consumer: AIOKafkaConsumer | None) -> int:
    """The group generation the member is in (-1 when unknown).

    aiokafka has no public accessor for it; its group coordinator keeps it as `generation`.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    value = getattr(coordinator, "generation", -1)
    return value if isinstance(value, int) else -1


def member(consumer: AIOKafkaConsumer | None) -> GroupMember:
    """The member as its transactions' offsets name it (`runtime.group_fencing`): generation, member
    ID (aiokafka's coordinator keeps it as `member_id`) and static instance ID. Unknown while it is
    out of the group (-1 and ""), which the coordinator refuses like a stale generation."""
    coordinator = getattr(consumer, "_coordinator", None)
    member_id = getattr(coordinator, "member_id", "")
    instance = getattr(consumer, "_group_instance_id", None)
    return GroupMember(generation(consumer), member_id if isinstance(member_id, str) else "",
                       instance if isinstance(instance, str) else None)


def rejoin(consumer: AIOKafkaConsumer | None) -> None:
    """Ask the member to rejoin its group now (a rebalance follows): aiokafka's coordinator does it
    on `request_rejoin()`, which it calls itself when a heartbeat learns the group moved on."""
    request = getattr(getattr(consumer, "_coordinator", None), "request_rejoin", None)
    if callable(request):
        request()


def kept_across(held_in: int, now: int) -> bool:
    """Whether a partition revoked in generation `held_in` and assigned again in `now` was owned by
    nobody else in between: the group went straight from one generation to the next. A member
    that the session timeout removed rejoins two or more generations later, after another member
    may have owned (and written) the partition."""
    return held_in >= 0 and now == held_in + 1


@dataclass(frozen=True, slots=True)
class GroupDescription:
    """A consumer group as its coordinator describes it: its state ("Stable", "PreparingRebalance",
    ...) and its members' client IDs."""

    state: str
    client_ids: tuple[str, ...]


async def describe_group(admin: AIOKafkaAdminClient, group_id: str,
                         coordinator: int | None = None) -> GroupDescription | None:
    """The group's description, or None when the coordinator could not give one: aiokafka does not
    raise a group's own error (NOT_COORDINATOR, a load in progress), it returns the group with an
    error code and no members, which would read as an empty group.

    One group per request, on purpose: aiokafka 0.14 sends DescribeGroups v3 but decodes the
    answer as v2's, which has no per-group `authorized_operations`. With one group that field is
    trailing bytes the decoder leaves unread; with several it would shift every group after the
    first."""
    for response in await admin.describe_consumer_groups([group_id], coordinator):
        for group in response.to_object()["groups"]:
            if group["group"] != group_id:
                continue
            if group["error_code"] != 0:
                return None
            return GroupDescription(group["state"],
                                    tuple(member["client_id"] for member in group["members"]))
    return None
