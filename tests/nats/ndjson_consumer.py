"""Reads NDJSON events from a JetStream stream without sluice (nats-py).

Creates a pull consumer (ephemeral unless --durable) on --stream with filter
--subject, fetches until --events lines were read or --timeout seconds passed,
and acks each message (waiting for the server's confirmation, so a durable
consumer run again does not see it twice). Each message body is NDJSON: every
non-empty line goes to stdout as it is. Each message's headers go to stderr as
one JSON object after "headers: ".

Exit status: 0 when --events lines were read, 1 on timeout before that.
"""

import argparse
import asyncio
import json
import sys
import time

import nats
import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

# How many messages one fetch may return, and how long it may wait.
FETCH_BATCH = 64
FETCH_WAIT = 1.0
ACK_TIMEOUT = 5.0


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", action="append", required=True, help="nats://host:port; repeat for a cluster")
    p.add_argument("--stream", required=True)
    p.add_argument("--subject", required=True, help="the consumer's filter subject")
    p.add_argument("--events", type=int, required=True, help="stop after this many NDJSON lines")
    p.add_argument("--timeout", type=float, required=True, help="seconds for the whole run")
    p.add_argument("--durable", help="a durable consumer name (default: an ephemeral consumer)")
    return p.parse_args()


async def consume(args):
    deadline = time.monotonic() + args.timeout
    nc = await nats.connect(servers=args.server, connect_timeout=min(args.timeout, 5.0), reconnect_time_wait=0.5)
    try:
        js = nc.jetstream()
        config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL)
        sub = await js.pull_subscribe(args.subject, durable=args.durable, stream=args.stream, config=config)
        events = 0
        while events < args.events:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                msgs = await sub.fetch(FETCH_BATCH, timeout=min(left, FETCH_WAIT))
            except nats.errors.TimeoutError:
                continue
            for msg in msgs:
                events += print_message(msg)
                await msg.ack_sync(timeout=ACK_TIMEOUT)
        return events
    finally:
        await nc.close()


def print_message(msg):
    """Prints the body's lines and the headers; returns the number of lines."""
    print("headers: " + json.dumps(msg.headers or {}, sort_keys=True), file=sys.stderr, flush=True)
    lines = [line for line in msg.data.decode("utf-8").split("\n") if line.strip()]
    for line in lines:
        print(line, flush=True)
    return len(lines)


def main():
    args = parse_args()
    try:
        # The margin lets a fetch that started just before the deadline end.
        events = asyncio.run(asyncio.wait_for(consume(args), args.timeout + FETCH_WAIT + ACK_TIMEOUT))
    except asyncio.TimeoutError:
        print(f"timed out after {args.timeout} s", file=sys.stderr)
        return 1
    if events < args.events:
        print(f"read {events} of {args.events} events in {args.timeout} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
