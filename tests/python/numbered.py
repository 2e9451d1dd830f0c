"""The messages of the WebSocket flow-control tests, shared by the client
(ws_flow.py) and the origin (ws_origin.py): message i is 1 << (i % 17) bytes
(1 byte to 64 KiB) unless a size is given, text for even i and binary for odd i, with content that
depends on i, so a lost, repeated or reordered message is seen."""


def size_of(i):
    return 1 << (i % 17)


def message(i, size=None):
    size = size_of(i) if size is None else size
    data = bytes(97 + (i + k) % 26 for k in range(min(size, 26)))
    data = (data * (size // 26 + 1))[:size]
    return data.decode() if i % 2 == 0 else data
