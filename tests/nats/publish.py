"""Publishes messages to JetStream without sluice (nats-py).

With --stream, first creates that file stream (subjects --stream-subject,
default --subject; --replicas copies) unless it exists. Then publishes each
--message body to --subject in order, with every --header NAME=VALUE, and
prints each PubAck to stdout as one JSON object: {"stream", "seq", "duplicate"}.

Exit status: 0 when every message was acked; anything else is a failure.
"""

import argparse
import asyncio
import json
import sys

import nats
import nats.js.errors
from nats.js.api import StorageType, StreamConfig

PUBLISH_TIMEOUT = 5.0


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", action="append", required=True, help="nats://host:port; repeat for a cluster")
    p.add_argument("--subject", required=True)
    p.add_argument("--message", action="append", default=[], help="one message body; repeat for more")
    p.add_argument("--header", action="append", default=[], help="NAME=VALUE on every message")
    p.add_argument("--stream", help="create this stream first unless it exists")
    p.add_argument("--stream-subject", action="append", help="the new stream's subjects (default: --subject)")
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds for the whole run")
    return p.parse_args()


async def ensure_stream(js, args):
    try:
        await js.stream_info(args.stream)
    except nats.js.errors.NotFoundError:
        config = StreamConfig(
            name=args.stream,
            subjects=args.stream_subject or [args.subject],
            storage=StorageType.FILE,
            num_replicas=args.replicas,
        )
        await js.add_stream(config)


async def publish(args, headers):
    nc = await nats.connect(servers=args.server, connect_timeout=5.0, reconnect_time_wait=0.5)
    try:
        js = nc.jetstream(timeout=PUBLISH_TIMEOUT)
        if args.stream:
            await ensure_stream(js, args)
        for body in args.message:
            ack = await js.publish(args.subject, body.encode("utf-8"), headers=dict(headers) or None)
            print(json.dumps({"stream": ack.stream, "seq": ack.seq, "duplicate": bool(ack.duplicate)}), flush=True)
    finally:
        await nc.close()


def main():
    args = parse_args()
    headers = [h.split("=", 1) for h in args.header]
    if any(len(h) != 2 for h in headers):
        print("--header takes NAME=VALUE", file=sys.stderr)
        return 2
    try:
        asyncio.run(asyncio.wait_for(publish(args, headers), args.timeout))
    except asyncio.TimeoutError:
        print(f"timed out after {args.timeout} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
