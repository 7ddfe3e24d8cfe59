"""An echo node in its own OS process, for the real-socket transport tests.

    python transport_peer.py --id 1 --bind 127.0.0.1:PORT --peer 0=tcp://127.0.0.1:P0

Prints ``ready <endpoint>`` once bound, then answers every message from a peer:
Hello with a Hello whose ``version`` names the connection identity it saw, Params
with the vector doubled (in place: the decoded tensor is the node's own) and the
round plus one, Bye with a Bye, after which it exits with status 0.
"""

from __future__ import annotations

import argparse
import asyncio

from p2pfl import wire
from p2pfl.transport import TransportOptions, ZmqTransport


async def serve(node_id: int, bind: str, peers: dict[int, str]) -> None:
    options = TransportOptions(send_timeout_s=5.0, reconnect_ivl_ms=20, reconnect_ivl_max_ms=200)
    async with ZmqTransport(node_id, bind, peers, options=options) as transport:
        print("ready", transport.endpoint, flush=True)
        while True:
            peer, frames = await transport.recv()
            message = wire.decode(frames)
            if peer is None or peer not in peers:
                continue
            reply: wire.Message
            if isinstance(message, wire.Hello):
                reply = wire.Hello(
                    node_id,
                    f"seen-peer-{peer}",
                    message.fingerprint,
                    message.param_count,
                    message.round,
                )
            elif isinstance(message, wire.Params):
                message.vector.mul_(2)
                reply = wire.Params(node_id, message.round + 1, message.vector)
            else:
                reply = wire.Bye(node_id, f"bye {message.sender}")
            await transport.send(peer, wire.encode(reply))
            if isinstance(message, wire.Bye):
                return


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--id", type=int, required=True)
    parser.add_argument("--bind", required=True)
    parser.add_argument("--peer", action="append", default=[], help="ID=ADDRESS")
    args = parser.parse_args()
    peers = {int(k): v for k, v in (p.split("=", 1) for p in args.peer)}
    asyncio.run(serve(args.id, args.bind, peers))


if __name__ == "__main__":
    main()
