"""Several sweeps, one tracking store: who trains a pair first.

Claims. Two sweeps that want the same pair must not both train it. Tracking stores offer no
compare-and-set that every backend shares, but tags are plain registers, and Lamport's bakery
needs nothing more: each contender writes its own claim (`choosing`, then a ticket one above every
ticket it saw) and reads the others'; the lowest (ticket, holder) goes first, the others wait for
it to finish and then reuse its run, or go in its place when it fails. Claims of dead holders
are ignored. (Lamport, "A New Solution of Dijkstra's Concurrent Programming Problem", 1974.)
"""

from __future__ import annotations

import hashlib
import json

CHOOSING = "choosing"


# --- claims ---


def claim_key(identity: dict) -> str:
    """A short stable name for what is claimed (a pair's params, commit, tree state and data)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def ticket_of(value: str) -> int | None:
    return int(value) if value.isdigit() else None


def next_ticket(values) -> int:
    return 1 + max((t for t in map(ticket_of, values) if t is not None), default=0)


def holder_ahead(holder: str, ticket: int, others: dict[str, str]) -> str | None:
    """The live contender this one must wait for (`others`: holder -> claim value), or None: go.

    A contender still choosing may yet pick a lower ticket, so it blocks until it has one.
    """
    choosing = sorted(h for h, value in others.items() if value == CHOOSING)
    if choosing:
        return choosing[0]
    ahead = sorted(
        (t, h) for h, value in others.items() if (t := ticket_of(value)) is not None and (t, h) < (ticket, holder)
    )
    return ahead[0][1] if ahead else None
