"""HPACK (RFC 7541) for the frame relay: decode request header blocks, encode our own blocks.

Decoding keeps a dynamic table per client connection (clients index their repetitive gRPC
headers) and caches Huffman-decoded strings by their encoded bytes, since the same few values
(paths, user agents, routing headers) arrive on every call. Once a client has indexed its headers,
it sends the very same block for every call of a kind, so each decoder also caches whole blocks;
see :meth:`Decoder.decode` for why that is safe. Static table and Huffman code come from the
``hpack`` package (python-hyper).

Encoding never uses the dynamic table: every block we send is a context-free sequence of static
indices and literals "without indexing", so blocks can be cached and reordered freely, and the
driver's response blocks (which we ask to be context-free too, SETTINGS_HEADER_TABLE_SIZE = 0)
can be forwarded verbatim between our own.
"""

from __future__ import annotations

from collections.abc import Iterable

from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

Header = tuple[str, str]

_STATIC: list[Header] = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in HeaderTable.STATIC_TABLE]
_STATIC_INDEX: dict[str, int] = {}
for _i, (_name, _) in enumerate(_STATIC, 1):
    _STATIC_INDEX.setdefault(_name, _i)
_ENTRY_OVERHEAD = 32
#: Huffman-decoded strings kept process-wide, and the longest kept (encoded bytes): paths, routing
#: headers and user agents repeat; tokens and junk are decoded each time (at most ~2 MB kept).
_HUFFMAN_CACHE_MAX = 4096
_HUFFMAN_CACHE_MAX_LEN = 256
_huffman_cache: dict[bytes, str] = {}
#: Decoded blocks kept per decoder, and the largest block kept (bytes): a handful of call kinds
#: repeat on a connection; the bounds keep a client that varies its headers from growing memory.
_BLOCK_CACHE_MAX = 64
_BLOCK_CACHE_MAX_LEN = 2048


class HpackError(Exception):
    """A header block that cannot be decoded: a COMPRESSION_ERROR for the connection."""


class Decoder:
    """One per direction of one connection: the dynamic table is connection state."""

    def __init__(self, max_table_size: int = 4096, max_header_list_size: int = 64 * 1024) -> None:
        self._dynamic: list[Header] = []  # newest first (index 62 is _dynamic[0])
        self._size = 0
        #: The SETTINGS_HEADER_TABLE_SIZE we advertised: the most the peer may ask for.
        self.limit = max_table_size
        self._max_size = max_table_size
        self.max_header_list_size = max_header_list_size
        #: Decoded blocks that left the dynamic table as it was, valid until the table changes.
        self._blocks: dict[bytes, tuple[Header, ...]] = {}
        self._version = 0  # counts changes to the dynamic table

    @property
    def version(self) -> int:
        """Changes whenever the dynamic table does: equal versions mean equal tables."""
        return self._version

    def _entry(self, index: int) -> Header:
        if index <= 0:
            raise HpackError("header index 0")
        if index <= len(_STATIC):
            return _STATIC[index - 1]
        try:
            return self._dynamic[index - len(_STATIC) - 1]
        except IndexError:
            raise HpackError(f"header index {index} is not in the dynamic table") from None

    def _add(self, header: Header) -> None:
        if not self._max_size:
            return  # an entry larger than the table empties it (§4.4): a zero-size table stays empty
        self._table_changed()
        self._dynamic.insert(0, header)
        self._size += len(header[0]) + len(header[1]) + _ENTRY_OVERHEAD
        self._evict()

    def _evict(self) -> None:
        while self._size > self._max_size and self._dynamic:
            n, v = self._dynamic.pop()
            self._size -= len(n) + len(v) + _ENTRY_OVERHEAD

    def _table_changed(self) -> None:
        self._version += 1
        if self._blocks:
            self._blocks.clear()

    def decode(self, block: bytes | memoryview) -> list[Header]:
        """The header list of ``block``, updating the dynamic table as the block says.

        A block's decoding depends only on its bytes and the dynamic table. A block that neither
        inserts entries nor updates the table size leaves the table as it found it, so decoding
        it again gives the same list for as long as the table does not change: such blocks are
        cached by their bytes, and every change to the table empties the cache. (Insertions into
        a zero-size table change nothing, which is why the driver's response blocks are cached too.)
        """
        if type(block) is not bytes or len(block) > _BLOCK_CACHE_MAX_LEN:
            return self._decode(block)
        cached = self._blocks.get(block)
        if cached is not None:
            return list(cached)
        version = self._version
        headers = self._decode(block)
        if self._version == version:
            if len(self._blocks) >= _BLOCK_CACHE_MAX:
                self._blocks.clear()
            self._blocks[block] = tuple(headers)
        return headers

    def _decode(self, block: bytes | memoryview) -> list[Header]:
        out: list[Header] = []
        pos, end, total = 0, len(block), 0
        try:
            while pos < end:
                b = block[pos]
                if b & 0x80:  # indexed header field (§6.1)
                    index, pos = _int(block, pos, 7)
                    header = self._entry(index)
                else:
                    if b & 0x40:  # literal with incremental indexing (§6.2.1)
                        index, pos = _int(block, pos, 6)
                        add = True
                    elif b & 0x20:  # dynamic table size update (§6.3)
                        if out:
                            raise HpackError("table size update after the first header field")
                        size, pos = _int(block, pos, 5)
                        if size > self.limit:
                            raise HpackError(f"table size update to {size} above our limit {self.limit}")
                        self._table_changed()
                        self._max_size = size
                        self._evict()
                        continue
                    else:  # literal without indexing / never indexed (§6.2.2, §6.2.3)
                        index, pos = _int(block, pos, 4)
                        add = False
                    if index:
                        name = self._entry(index)[0]
                    else:
                        name, pos = _str(block, pos)
                    value, pos = _str(block, pos)
                    header = (name, value)
                    if add:
                        self._add(header)
                total += len(header[0]) + len(header[1]) + _ENTRY_OVERHEAD
                if total > self.max_header_list_size:
                    raise HpackError(f"header list larger than {self.max_header_list_size} bytes")
                out.append(header)
        except IndexError:
            raise HpackError("header block is truncated") from None
        return out


def _int(buf: bytes | memoryview, pos: int, prefix_bits: int) -> tuple[int, int]:
    mask = (1 << prefix_bits) - 1
    value = buf[pos] & mask
    pos += 1
    if value < mask:
        return value, pos
    shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value += (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise HpackError("HPACK integer too large")


def _str(buf: bytes | memoryview, pos: int) -> tuple[str, int]:
    huffman = buf[pos] & 0x80
    length, pos = _int(buf, pos, 7)
    end = pos + length
    if end > len(buf):
        raise HpackError("string literal runs past the header block")
    raw = bytes(buf[pos:end])
    if not huffman:
        return raw.decode("utf-8", "surrogateescape"), end
    text = _huffman_cache.get(raw)
    if text is None:
        try:
            text = decode_huffman(raw).decode("utf-8", "surrogateescape")
        except Exception as exc:  # hpack raises its own HPACKDecodingError
            raise HpackError(f"bad Huffman string: {exc}") from exc
        if len(raw) <= _HUFFMAN_CACHE_MAX_LEN and len(_huffman_cache) < _HUFFMAN_CACHE_MAX:
            _huffman_cache[raw] = text
    return text, end


# -- encoding ---------------------------------------------------------------------------------


def encode_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _literal_bytes(data: bytes) -> bytes:
    return encode_int(len(data), 7) + data


def encode_header(name: str, value: str | bytes) -> bytes:
    """One literal header field without indexing (§6.2.2); a static-table name is referenced by index."""
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
    index = _STATIC_INDEX.get(name)
    if index is not None:
        return encode_int(index, 4) + _literal_bytes(raw)
    return b"\x00" + _literal_bytes(name.encode("latin-1")) + _literal_bytes(raw)


def encode_headers(headers: Iterable[tuple[str, str | bytes]]) -> bytes:
    return b"".join(encode_header(n, v) for n, v in headers)


#: ``:status 200`` is static entry 8; ``content-type: application/grpc`` follows as a literal.
RESPONSE_HEADERS_200 = b"\x88" + encode_header("content-type", "application/grpc")
#: ``:method POST`` (3) and ``:scheme http`` (6) of every gRPC request.
REQUEST_PREFIX = b"\x83\x86"
