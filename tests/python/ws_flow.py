"""Flow-control scenarios for a WebSocket through Holdfast, on the real
`websockets` client. Prints one JSON object with what happened.

Usage: ws_flow.py URL SCENARIO [ARGS...]
  send N [S]       send messages 0..N-1 of numbered.py (1 byte to 64 KiB,
                   text and binary in turn) back to back while reading the
                   echoes (all of S bytes if given); check every echo
                   arrives, equal and in order
  receive N [S]    read the N messages the origin sends right after the
                   handshake (/burst?n=N[&size=S]); check each, in order
  pause N SECONDS [S]
                   the same, but read nothing for SECONDS first
  sizes OFFER      with permessage-deflate offered as OFFER (none, default,
                   no-takeover), send text and binary messages of many sizes
                   (0 to 256 KiB) and check each echo
  big SIZE...      send a binary message of each SIZE and check its echo
"""

import asyncio
import json
import random
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from numbered import message


def closed(e):
    return [e.rcvd.code, e.rcvd.reason] if e.rcvd else None


async def send(ws, n, size=None):
    out = {"sent": 0, "received": 0, "mismatch": None}

    async def sender():
        for i in range(n):
            await ws.send(message(i, size))
            out["sent"] += 1

    async def receiver():
        for i in range(n):
            got = await ws.recv()
            if got != message(i, size):
                out["mismatch"] = {"at": i, "got_len": len(got), "want_len": len(message(i, size))}
                return
            out["received"] += 1

    try:
        await asyncio.gather(sender(), receiver())
        await ws.close()
    except ConnectionClosed as e:
        out["closed"] = closed(e)
    return out


async def receive(ws, n, pause=0.0, size=None):
    out = {"received": 0, "mismatch": None}
    if pause:
        await asyncio.sleep(pause)
    try:
        for i in range(n):
            got = await ws.recv()
            if got != message(i, size):
                out["mismatch"] = {"at": i, "got_len": len(got), "want_len": len(message(i, size))}
                break
            out["received"] += 1
        await ws.close()
    except ConnectionClosed as e:
        out["closed"] = closed(e)
    return out


SIZES = sorted(
    set(
        [0, 1, 63, 64, 65, 125, 126, 127, 1000, 4095, 4096, 4097, 16384, 32768, 65535, 65536, 65537]
        + list(range(58000, 62001, 250))
        + list(range(128 * 1024, 132 * 1024 + 1, 256))
        + [200000, 256 * 1024]
    )
)


def payload(size, binary):
    if binary:
        # Image-like: a gradient with noise, which deflate shrinks only by a
        # fifth (like the bitmap of Autobahn's 12.2 cases, which found
        # compressed messages of about 64 KiB cut short).
        rng = random.Random(size)
        return bytes(((i // 7) + rng.randrange(16)) & 0xFF for i in range(size))
    # Text that compresses well, with some variety.
    unit = "holdfast flows %d; " % size
    return (unit * (size // len(unit) + 1))[:size]


async def sizes(ws):
    out = {"extensions": [e.name for e in ws.protocol.extensions], "bad": [], "checked": 0}
    try:
        for size in SIZES:
            for binary in (False, True):
                sent = payload(size, binary)
                await ws.send(sent)
                got = await ws.recv()
                if got != sent:
                    out["bad"].append({"size": size, "binary": binary, "got": len(got)})
                out["checked"] += 1
        await ws.close()
    except ConnectionClosed as e:
        out["closed"] = closed(e)
    return out


async def big(ws, sizes):
    out = {"bad": [], "checked": 0}
    try:
        for size in sizes:
            sent = bytes(i * 7 % 251 for i in range(size))
            await ws.send(sent)
            got = await ws.recv()
            if got != sent:
                out["bad"].append({"size": size, "got": len(got)})
            out["checked"] += 1
        await ws.close()
    except ConnectionClosed as e:
        out["closed"] = closed(e)
    return out


async def main(url, scenario, args):
    options = {"max_size": None}
    if scenario == "sizes":
        offer = args[0]
        if offer == "none":
            options["compression"] = None
        elif offer == "no-takeover":
            options["compression"] = None
            options["extensions"] = [
                ClientPerMessageDeflateFactory(
                    server_no_context_takeover=True,
                    client_no_context_takeover=True,
                )
            ]
    if scenario == "pause":
        # Read nothing into the library's queue either: the TCP window fills.
        options["max_queue"] = 1
    async with connect(url, **options) as ws:
        if scenario == "send":
            size = int(args[1]) if len(args) > 1 else None
            return await send(ws, int(args[0]), size)
        if scenario == "receive":
            size = int(args[1]) if len(args) > 1 else None
            return await receive(ws, int(args[0]), size=size)
        if scenario == "pause":
            size = int(args[2]) if len(args) > 2 else None
            return await receive(ws, int(args[0]), float(args[1]), size)
        if scenario == "sizes":
            return await sizes(ws)
        if scenario == "big":
            return await big(ws, [int(a) for a in args])
    raise SystemExit(f"unknown scenario {scenario}")


print(json.dumps(asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2], sys.argv[3:]), 120))))
