"""Drive a WebSocket through Holdfast with the real `websockets` library.

Usage: ws_client.py URL SCENARIO
  echo     subprotocol, text and binary echo, ping, then close 4000 "bye"
  echo-simple  text echo (twice), then close 1000
  gateway  read a greeting, get an echo, then send "bad" and report the close
  room     get an echo, print {"ready": true}, then report the next message
  server-close  ask the origin to close; report the code and reason
  refused  expect the handshake to be refused; report status and body
  too-big  send 2 MiB; report the close code
  deflate  report the negotiated extensions, echo large and small messages,
           then send 2 MiB that compress to a few KiB; report the close code
Prints one JSON object with what happened.
"""

import asyncio
import json
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


async def main(url, scenario):
    out = {}
    if scenario == "refused":
        try:
            async with connect(url):
                out["opened"] = True
        except InvalidStatus as e:
            out["status"] = e.response.status_code
            out["body"] = e.response.body.decode()
        return out
    async with connect(url, subprotocols=["chat", "superchat"], max_size=None) as ws:
        out["subprotocol"] = ws.subprotocol
        if scenario == "echo":
            await ws.send("hello")
            out["text"] = await ws.recv()
            await ws.send(b"\x00\x01\xff")
            out["binary"] = list(await ws.recv())
            pong = await ws.ping(b"p")
            await asyncio.wait_for(pong, 10)
            out["pong"] = True
            await ws.close(4000, "bye")
            # The answer to our close: None when none came (the close
            # handshake timed out).
            rcvd = ws.protocol.close_rcvd
            out["close_answer"] = [rcvd.code, rcvd.reason] if rcvd else None
        elif scenario == "echo-simple":
            await ws.send("hello")
            out["text"] = await ws.recv()
            await ws.send("again")
            out["again"] = await ws.recv()
            await ws.close()
            out["close_code"] = ws.close_code
        elif scenario == "gateway":
            out["first"] = await ws.recv()
            await ws.send("echo me")
            out["echo"] = await ws.recv()
            await ws.send("bad")
            try:
                out["unexpected"] = await ws.recv()
            except ConnectionClosed as e:
                out["code"] = e.rcvd.code if e.rcvd else None
        elif scenario == "room":
            await ws.send("hello")
            out["echo"] = await ws.recv()
            print(json.dumps({"ready": True}), flush=True)
            try:
                out["published"] = await ws.recv()
                await ws.close()
            except ConnectionClosed as e:
                out["closed"] = [e.rcvd.code, e.rcvd.reason] if e.rcvd else None
        elif scenario == "server-close":
            await ws.send("close-me")
            try:
                await ws.recv()
            except ConnectionClosed as e:
                out["code"] = e.rcvd.code if e.rcvd else None
                out["reason"] = e.rcvd.reason if e.rcvd else None
        elif scenario == "deflate":
            out["extensions"] = [e.name for e in ws.protocol.extensions]
            big = "holdfast " * 20000
            await ws.send(big)
            out["text_ok"] = (await ws.recv()) == big
            data = bytes(range(256)) * 400
            await ws.send(data)
            out["binary_ok"] = (await ws.recv()) == data
            await ws.send("small")
            out["small"] = await ws.recv()
            await ws.send("x" * (2 * 1024 * 1024))
            try:
                await ws.recv()
            except ConnectionClosed as e:
                out["code"] = e.rcvd.code if e.rcvd else None
        elif scenario == "too-big":
            await ws.send("x" * (2 * 1024 * 1024))
            try:
                await ws.recv()
            except ConnectionClosed as e:
                out["code"] = e.rcvd.code if e.rcvd else None
    return out


print(json.dumps(asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2]), 30))))
