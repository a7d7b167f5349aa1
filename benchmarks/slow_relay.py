"""A relay some milliseconds away, for the send benchmark: a TCP proxy in front of the sink
that holds every chunk for half the delay in each direction, so each round trip takes the
delay longer (the latency is simulated; what goes through is the sink's real SMTP).

Run as ``python -m benchmarks.slow_relay HOST PORT DELAY_MS [--hide-pipelining]`` it prints
``port N`` once it listens on 127.0.0.1:N. ``--hide-pipelining`` takes PIPELINING out of the
relay's EHLO reply, so a client sends one command at a time: the same relay with and
without it.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import uvloop

HIDDEN = b"250-PIPELINING\r\n"


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hold: float, hide: bool
) -> None:
    """Forward what ``reader`` gets to ``writer``, each chunk ``hold`` seconds after it came,
    in order."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()
        writer.close()

    delivering = asyncio.create_task(deliver())
    try:
        while chunk := await reader.read(65536):
            if hide:
                chunk = chunk.replace(HIDDEN, b"")
            queue.put_nowait((time.monotonic() + hold, chunk))
    except ConnectionError:
        pass
    finally:
        queue.put_nowait((0.0, b""))
        await delivering


async def serve(host: str, port: int, delay_ms: float, hide: bool) -> None:
    hold = delay_ms / 2000  # half the round trip each way

    async def connected(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        relay_r, relay_w = await asyncio.open_connection(host, port)
        await asyncio.gather(
            _pump(client_r, relay_w, hold, False),
            _pump(relay_r, client_w, hold, hide),
            return_exceptions=True,
        )

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else "")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("delay_ms", type=float)
    parser.add_argument("--hide-pipelining", action="store_true")
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port, args.delay_ms, args.hide_pipelining))


if __name__ == "__main__":
    main()
