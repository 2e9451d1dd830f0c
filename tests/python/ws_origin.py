"""A WebSocket origin on the real `websockets` library, for the flow-control
tests: it listens on a free loopback port, prints {"port": N} once ready,
and serves until killed.

Paths:
  /echo          echo every message (text stays text, binary stays binary)
  /burst?n=N[&size=S]
                 right after the handshake send messages 0..N-1 of
                 numbered.py (all of S bytes if given) back to back, then echo
  /slow?delay=D  echo, sleeping D seconds before reading each message (a
                 slow reader: its TCP window fills and the proxy must wait)
With --deflate it accepts permessage-deflate offers (for Autobahn's
compression cases against the origin directly). Every connection's close
code is printed as {"closed": code} when it ends.
"""

import asyncio
import json
import sys
from urllib.parse import parse_qs, urlparse

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from numbered import message


async def handler(ws):
    url = urlparse(ws.request.path)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    try:
        if url.path == "/burst":
            size = int(query["size"]) if "size" in query else None
            for i in range(int(query.get("n", "1000"))):
                await ws.send(message(i, size))
        delay = float(query.get("delay", "0")) if url.path == "/slow" else 0
        while True:
            if delay:
                await asyncio.sleep(delay)
            received = await ws.recv()
            await ws.send(received)
    except ConnectionClosed:
        pass
    finally:
        code = ws.close_code
        print(json.dumps({"closed": code}), flush=True)


async def main():
    compression = "deflate" if "--deflate" in sys.argv else None
    # No size limit here: the proxy's limit is what the tests exercise.
    async with serve(handler, "127.0.0.1", 0, max_size=None, compression=compression) as server:
        port = server.sockets[0].getsockname()[1]
        print(json.dumps({"port": port}), flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
