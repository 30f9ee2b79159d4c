"""The memo example in Python: concurrent get-or-set callers on a missing key, one computation.

For each key, CALLERS get-or-set futures start at once. The host hands exactly one of them the
key's vacancy: that caller computes the value (the n-th prime, the slow way) and fills it; the
others wait on the rendezvous and receive the value. Resources are released with `with` (their
`__exit__` drops them): a vacancy dropped unfilled passes to a waiter, so it must not linger.
"""

import sys

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import cache, poll, types

CALLERS = 10
KEYS = [2_000, 3_000, 4_000]
TTL_MS = 60_000


def nth_prime(n: int) -> int:
    """The n-th prime, by trial division: slow on purpose."""
    found, candidate = 0, 1
    while found < n:
        candidate += 1
        if all(candidate % d for d in range(2, int(candidate**0.5) + 1)):
            found += 1
    return candidate


def settle(futures):
    """Waits for every get-or-set future; yields (index, entry) as each becomes ready."""
    pending = dict(enumerate(futures))
    while pending:
        indices = list(pending)
        pollables = [pending[i].listen_to_future_get_or_set_result() for i in indices]
        try:
            ready = poll.poll(pollables)
        finally:
            for pollable in pollables:
                pollable.__exit__(None, None, None)
        for r in ready:
            i = indices[r]
            future = pending.pop(i)
            with future:
                result = future.future_get_or_set_result_get()
            if isinstance(result, Err) or result is None:
                raise RuntimeError(f"get-or-set failed: {result}")
            yield i, result.value


def memo(key: str, n: int) -> None:
    computations, waited, values = 0, 0, set()
    futures = [cache.get_or_set(key) for _ in range(CALLERS)]
    for _, entry in settle(futures):
        if isinstance(entry, cache.GetOrSetEntry_Vacant):
            with entry.value as vacancy:
                value = str(nth_prime(n)).encode()
                computations += 1
                with vacancy.vacancy_fill(TTL_MS) as outgoing:
                    outgoing.outgoing_value_write_body_sync(value)
            values.add(value)
        else:
            with entry.value as incoming:
                values.add(incoming.incoming_value_consume_sync())
            waited += 1
    assert len(values) == 1, values
    print(f"{key}: {CALLERS} callers, {computations} computation, {waited} waited "
          f"({values.pop().decode()})")


class Run(exports.Run):
    def run(self) -> None:
        for n in KEYS:
            memo(f"nth-prime:{n}", n)
        with cache.get("nth-prime:2000") as future:
            with future.listen_to_future_get_result() as pollable:
                pollable.block()
            result = future.future_get_result_get()
        print(f"get nth-prime:2000: {'hit' if isinstance(result, Ok) and result.value else 'miss'}")
        sys.stdout.flush()
