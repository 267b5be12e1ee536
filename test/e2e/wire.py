"""Protobuf wire encoding by hand, for requests the Python protobuf library
will not build: unknown fields, strings with invalid UTF-8, NUL bytes where
a C string would stop. Send the bytes through a generic grpcio method
(raw_method) so that nothing re-encodes them on the way."""

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5


def varint(n):
    """n (>= 0) as a base-128 varint."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(number, wire_type):
    return varint(number << 3 | wire_type)


def ld(number, data):
    """A length-delimited field (string, bytes or message)."""
    if isinstance(data, str):
        data = data.encode()
    return tag(number, LEN) + varint(len(data)) + data


def uint(number, n):
    """A varint field."""
    return tag(number, VARINT) + varint(n)


def record(id=b"", type=b"order.created", key=b"", payload=b'{"n":1}', attributes=(),
           event_time=None, extra=b""):
    """A sluice.v1.Record on the wire. attributes is a list of (key, value)
    or of already encoded entries (bytes); event_time is encoded Timestamp
    bytes; extra is appended as is (unknown fields, say)."""
    out = b""
    if id:
        out += ld(1, id)
    if type:
        out += ld(2, type)
    if key:
        out += ld(3, key)
    if payload:
        out += ld(4, payload)
    for a in attributes:
        entry = a if isinstance(a, bytes) else ld(1, a[0]) + ld(2, a[1])
        out += ld(5, entry)
    if event_time is not None:
        out += ld(6, event_time)
    return out + extra


def ingest_request(rec):
    return ld(1, rec)


def batch_request(recs):
    return b"".join(ld(1, r) for r in recs)


def raw_method(channel, name, stream=False):
    """A callable for /sluice.v1.IngestService/<name> that sends and returns
    bytes, with no serializer in between."""
    path = f"/sluice.v1.IngestService/{name}"
    if stream:
        return channel.stream_stream(path)
    return channel.unary_unary(path)
