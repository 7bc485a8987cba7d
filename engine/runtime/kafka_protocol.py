"""aiokafka's protocol messages encoded and decoded by code written for each message type.

aiokafka (0.14) encodes and decodes every request and response field by field through its type
objects: a `BytesIO` read and a `struct` call per integer, a generator per schema and array. With
the record batches already in C, that is most of what a process spends in the client outside its
socket writes at moderate load, where each request carries little: a fetch request naming the 16
partitions an engine reads took 117 us to encode and its empty response 164 us to decode on the
2-core machine of issue 17, and a process makes such a round trip for every turn or two.

`install()` gives each message class whose schema uses only the fixed-size types (the
non-flexible versions, which are the ones aiokafka speaks for produce, fetch, transactions,
offsets and group membership) an `encode` and a `decode` generated from its schema, as
`dataclasses` writes an `__init__`: straight-line code over one buffer with `struct.unpack_from`
and offsets, consecutive integers read and written by one `struct` call. The bytes and the values
are aiokafka's own (`tests/unit/test_kafka_protocol.py` checks both ways against aiokafka's codec
for every class it replaces, including a short buffer, which raises `ValueError` in both). A
class with a flexible (compact, tagged) field keeps aiokafka's codec.

`install()` also counts the requests the process's connections send, by type (`requests_sent`,
served as `headrace_kafka_requests_total` on `/metrics`): at moderate load a process's cost is per
request more than per record, and the counts say which requests a workflow costs.
"""

from __future__ import annotations

import io
import itertools
import struct
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from aiokafka.conn import AIOKafkaConnection
from aiokafka.protocol import (
    admin,
    api,
    commit,
    coordination,
    fetch,
    group,
    metadata,
    offset,
    produce,
    transaction,
)
from aiokafka.protocol.struct import Struct
from aiokafka.protocol.types import Array, Boolean, Bytes, Float64, Int8, Int16, Int32, Int64, Schema, String, UInt32

__all__ = ["codec", "install", "installed", "replaceable", "requests_sent"]

#: The fixed-size types, by their `struct` format character (aiokafka's are big-endian, as here).
_FIXED: dict[Any, str] = {Int8: "b", Int16: "h", Int32: "i", Int64: "q", UInt32: "I", Float64: "d", Boolean: "?"}

_MODULES = (admin, api, commit, coordination, fetch, group, metadata, offset, produce, transaction)

#: The classes whose `encode` was replaced, each with whether its `decode` was too (`installed`).
_REPLACED: dict[type, bool] = {}
_INSTALLING = threading.Lock()
#: Requests sent by this process's connections since `install`, by request name ("Produce", ...).
_SENT: Counter[str] = Counter()


class _Unsupported(Exception):
    """A schema with a type this module does not write code for (aiokafka's codec stays)."""


class _Writer:
    """The source of one generated function, and the objects it refers to by name."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {}
        self._counter = itertools.count()

    def fresh(self, prefix: str) -> str:
        return f"{prefix}{next(self._counter)}"

    def line(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def packer(self, formats: str) -> str:
        """The name of a `struct.Struct` for `formats` (big-endian), made once per function."""
        name = f"_s_{formats.replace('?', 'B_')}"
        self.names.setdefault(name, struct.Struct(">" + formats))
        return name


def _fields(schema: Schema) -> list[Any]:
    for field in schema.fields:
        _check(field)
    return list(schema.fields)


def _check(kind: Any) -> None:
    if kind in _FIXED or kind is Bytes:
        return
    if type(kind) is String:  # exact types: CompactString and CompactArray subclass these
        return
    if type(kind) is Array:
        _check(kind.array_of)
        return
    if type(kind) is Schema:
        _fields(kind)
        return
    raise _Unsupported(repr(kind))


def _runs(fields: list[Any]) -> Iterator[tuple[str, list[int]]]:
    """The fields in order as (formats, indexes): consecutive fixed-size ones grouped under their
    `struct` formats, any other field alone under ""."""
    run: list[int] = []
    formats = ""
    for index, kind in enumerate(fields):
        if kind in _FIXED:
            run.append(index)
            formats += _FIXED[kind]
            continue
        if run:
            yield formats, run
            run, formats = [], ""
        yield "", [index]
    if run:
        yield formats, run


# -- decoding --------------------------------------------------------------------------------------

def _decode_value(w: _Writer, kind: Any, target: str, depth: int) -> None:
    """Code that reads one value of `kind` at offset `o` of `buf` into `target`, moving `o` past it."""
    if kind in _FIXED:
        name = w.packer(_FIXED[kind])
        w.line(depth, f"{target}, = {name}.unpack_from(buf, o)")
        w.line(depth, f"o += {struct.calcsize('>' + _FIXED[kind])}")
    elif kind is Bytes or type(kind) is String:
        size, header = (w.fresh("n"), w.packer("i" if kind is Bytes else "h"))
        w.line(depth, f"{size}, = {header}.unpack_from(buf, o)")
        w.line(depth, f"o += {4 if kind is Bytes else 2}")
        w.line(depth, f"if {size} < 0:")
        w.line(depth + 1, f"{target} = None")
        w.line(depth, "else:")
        underrun = "Buffer underrun decoding " + ("Bytes" if kind is Bytes else "string")
        w.line(depth + 1, f"if o + {size} > end:")
        w.line(depth + 2, f"raise ValueError({underrun!r})")
        if kind is Bytes:
            w.line(depth + 1, f"{target} = buf[o:o + {size}]")
        else:
            w.names.setdefault("_str", str)
            w.line(depth + 1, f"{target} = _str(buf[o:o + {size}], {kind.encoding!r})")
        w.line(depth + 1, f"o += {size}")
    elif type(kind) is Array:
        count, item = w.fresh("n"), w.fresh("item")
        w.line(depth, f"{count}, = {w.packer('i')}.unpack_from(buf, o)")
        w.line(depth, "o += 4")
        w.line(depth, f"if {count} == -1:")
        w.line(depth + 1, f"{target} = None")
        w.line(depth, "else:")
        w.line(depth + 1, f"{target} = []")
        w.line(depth + 1, f"for _ in range({count}):")
        _decode_value(w, kind.array_of, item, depth + 2)
        w.line(depth + 2, f"{target}.append({item})")
    else:  # a Schema: a tuple of its fields
        parts = _decode_fields(w, _fields(kind), depth)
        w.line(depth, f"{target} = ({', '.join(parts)},)" if parts else f"{target} = ()")


def _decode_fields(w: _Writer, fields: list[Any], depth: int) -> list[str]:
    """Code that reads `fields` in order; returns the names their values are in."""
    names = [w.fresh("v") for _ in fields]
    for formats, which in _runs(fields):
        if formats:
            w.line(depth, f"{', '.join(names[i] for i in which)}, = {w.packer(formats)}.unpack_from(buf, o)")
            w.line(depth, f"o += {struct.calcsize('>' + formats)}")
        else:
            _decode_value(w, fields[which[0]], names[which[0]], depth)
    return names


def _decoder(cls: type[Struct]) -> Callable[[Any, int], tuple[list[Any], int]]:
    """`decode(buf, o) -> (field values, offset after them)` for `cls`'s schema."""
    w = _Writer()
    fields = _fields(cls.SCHEMA)
    w.line(0, "def decode(buf, o):")
    w.line(1, "end = len(buf)")
    names = _decode_fields(w, fields, 1)
    w.line(1, f"return [{', '.join(names)}], o")
    decode: Callable[[Any, int], tuple[list[Any], int]] = _compiled(w, "decode", cls)
    return decode


# -- encoding --------------------------------------------------------------------------------------

def _encode_value(w: _Writer, kind: Any, value: str, depth: int) -> None:
    """Code that appends the bytes of `value` (an expression) as `kind` to `out`."""
    if kind in _FIXED:
        w.line(depth, f"out.append({w.packer(_FIXED[kind])}.pack({value}))")
    elif kind is Bytes:
        w.line(depth, f"if {value} is None:")
        w.line(depth + 1, "out.append(b'\\xff\\xff\\xff\\xff')")
        w.line(depth, "else:")
        w.line(depth + 1, f"out.append({w.packer('i')}.pack(len({value})))")
        w.line(depth + 1, f"out.append({value})")
    elif type(kind) is String:
        text = w.fresh("t")
        w.names.setdefault("_str", str)
        w.line(depth, f"if {value} is None:")
        w.line(depth + 1, "out.append(b'\\xff\\xff')")
        w.line(depth, "else:")
        w.line(depth + 1, f"{text} = _str({value}).encode({kind.encoding!r})")
        w.line(depth + 1, f"out.append({w.packer('h')}.pack(len({text})))")
        w.line(depth + 1, f"out.append({text})")
    elif type(kind) is Array:
        item = w.fresh("item")
        w.line(depth, f"if {value} is None:")
        w.line(depth + 1, "out.append(b'\\xff\\xff\\xff\\xff')")
        w.line(depth, "else:")
        w.line(depth + 1, f"out.append({w.packer('i')}.pack(len({value})))")
        w.line(depth + 1, f"for {item} in {value}:")
        _encode_value(w, kind.array_of, item, depth + 2)
    else:  # a Schema: any sequence of its fields' values (aiokafka checks the count, then indexes)
        fields = _fields(kind)
        whole = w.fresh("s")
        w.line(depth, f"{whole} = {value}")
        w.line(depth, f"if len({whole}) != {len(fields)}:")
        w.line(depth + 1, "raise ValueError('Item field count does not match Schema')")
        _encode_fields(w, fields, [f"{whole}[{i}]" for i in range(len(fields))], depth)


def _encode_fields(w: _Writer, fields: list[Any], values: list[str], depth: int) -> None:
    for formats, which in _runs(fields):
        if formats:
            w.line(depth, f"out.append({w.packer(formats)}.pack({', '.join(values[i] for i in which)}))")
        else:
            _encode_value(w, fields[which[0]], values[which[0]], depth)


def _encoder(cls: type[Struct]) -> Callable[[dict[str, Any]], bytes]:
    """`encode(fields) -> bytes` for `cls`'s schema, `fields` the message's `__dict__`."""
    w = _Writer()
    fields = _fields(cls.SCHEMA)
    w.line(0, "def encode(d):")
    w.line(1, "out = []")
    _encode_fields(w, fields, [f"d[{name!r}]" for name in cls.SCHEMA.names], 1)
    w.line(1, "return b''.join(out)")
    encode: Callable[[dict[str, Any]], bytes] = _compiled(w, "encode", cls)
    return encode


def _compiled(w: _Writer, name: str, cls: type) -> Any:
    namespace: dict[str, Any] = dict(w.names)
    source = "\n".join(w.lines) + "\n"
    code = compile(source, f"<kafka_protocol {cls.__module__}.{cls.__qualname__}.{name}>", "exec")
    exec(code, namespace)  # noqa: S102 - generated from aiokafka's own schema objects, no outside text
    return namespace[name]


# -- installing ------------------------------------------------------------------------------------

def _struct_classes() -> Iterator[type[Struct]]:
    seen: set[type] = set()
    for module in _MODULES:
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Struct) and value not in seen:
                seen.add(value)
                yield value


def replaceable(cls: type[Struct]) -> bool:
    """Whether `install` replaces `cls`'s `encode`: a message class that keeps `Struct`'s, whose
    schema has only types this module writes code for."""
    if cls.encode is not Struct.encode:
        return False
    try:
        _fields(cls.SCHEMA)
    except _Unsupported:
        return False
    return bool(cls.SCHEMA.fields)


def _decode_replaceable(cls: type[Struct]) -> bool:
    """Whether its `decode` too: one that keeps `Struct`'s `decode` and `__init__` (the generated
    decoder sets the fields as `Struct.__init__` does; a request header's own takes other arguments)."""
    constructor: object = cls.__new__  # the generated decoder makes the message with object.__new__
    return (replaceable(cls) and cls.__init__ is Struct.__init__ and constructor is object.__new__
            and getattr(cls.decode, "__func__", None) is _STRUCT_DECODE)


_STRUCT_DECODE = Struct.decode.__func__


def codec(cls: type[Struct]) -> tuple[Callable[[type[Struct], io.BytesIO | bytes], Struct], Callable[[Struct], bytes]]:
    """The `decode` (a classmethod's function) and `encode` that `install` gives `cls`, without
    giving them (for a class of one's own, as the tests make one with the types aiokafka's
    schemas do not use yet). Raises `ValueError` for a schema it has no code for."""
    try:
        decode_fields = _decoder(cls)
    except _Unsupported as exc:
        raise ValueError(f"{cls.__name__}: no generated codec for {exc}") from None
    encode_fields = _encoder(cls)
    names = cls.SCHEMA.names
    new = object.__new__

    def decode(klass: type[Struct], data: io.BytesIO | bytes) -> Struct:
        frame: io.BytesIO | None = None
        if klass is cls and type(data) is io.BytesIO:  # the connection's frame, its header read
            frame, start, buf = data, data.tell(), data.getvalue()  # a BytesIO of bytes: no copy
        elif klass is cls and type(data) is bytes:
            start, buf = 0, data
        else:  # a subclass made later with a schema of its own, or another kind of buffer or stream
            reference: Struct = _STRUCT_DECODE(klass, data)
            return reference
        try:
            values, end = decode_fields(buf, start)
        except struct.error as exc:  # aiokafka's types say so with a ValueError too
            # (The frame's position stays where it was; aiokafka's leaves it part-way. The
            # connection drops a frame that does not decode either way.)
            raise ValueError(f"{klass.__name__}: {exc}") from None
        if frame is not None:
            frame.seek(end)
        message = new(klass)
        message.__dict__.update(zip(names, values, strict=True))
        return message

    def encode(self: Struct) -> bytes:
        if type(self) is not cls:
            inherited: bytes = Struct.encode(self)
            return inherited
        try:
            return encode_fields(self.__dict__)
        except struct.error as exc:
            raise ValueError(f"{type(self).__name__}: {exc}") from None

    return decode, encode


def _install_one(cls: type[Struct], *, decoder: bool) -> None:
    decode, encode = codec(cls)
    _REPLACED[cls] = decoder
    if decoder:
        cls.decode = classmethod(decode)
    cls.encode = encode


def install() -> int:
    """Replace the codec of every replaceable message class of aiokafka and count the requests
    sent (once per process; the bytes on the wire do not change); returns how many classes were
    replaced."""
    with _INSTALLING:
        if _REPLACED:
            return 0
        chosen = [(cls, _decode_replaceable(cls)) for cls in _struct_classes() if replaceable(cls)]
        for cls, decoder in chosen:
            _install_one(cls, decoder=decoder)
        AIOKafkaConnection.send = _counting(AIOKafkaConnection.send)
        return len(chosen)


def _request_name(request_type: type) -> str:
    """"Produce" for aiokafka's `ProduceRequest` (a builder) or `ProduceRequest_v7` (a struct)."""
    name = request_type.__name__.split("_v", 1)[0]
    return name.removesuffix("Request") or name


def _counting(send: Callable[..., Any]) -> Callable[..., Any]:
    names: dict[type, str] = {}

    def counted(self: AIOKafkaConnection, request: Any, expect_response: bool = True) -> Any:
        sending = send(self, request, expect_response)  # raises when there is no connection: not sent
        kind = type(request)
        name = names.get(kind)
        if name is None:
            name = names[kind] = _request_name(kind)
        _SENT[name] += 1
        return sending

    return counted


def requests_sent() -> dict[str, int]:
    """Requests this process's Kafka connections sent since `install`, by request name (SASL
    tokens, which go outside the request framing, are not counted)."""
    return dict(_SENT)


def installed() -> dict[type, bool]:
    """The classes `install` replaced the `encode` of, each with whether it replaced its `decode`."""
    return dict(_REPLACED)
