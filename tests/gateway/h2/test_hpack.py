"""HPACK: our decoder against python-hyper's encoder, and our encoder against its decoder."""

from __future__ import annotations

import hpack as hyper
import pytest

from sparkgate.gateway.h2.hpack import (
    REQUEST_PREFIX,
    RESPONSE_HEADERS_200,
    Decoder,
    HpackError,
    encode_header,
    encode_headers,
    encode_int,
)

REQUEST = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", "/spark.connect.SparkConnectService/ExecutePlan"),
    (":authority", "localhost:15002"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
    ("x-doordash-team", "fe"),
    ("user-agent", "grpc-python/1.66 grpc-c/43.0.0 (linux; chttp2)"),
]


@pytest.mark.parametrize("huffman", [True, False])
def test_decodes_what_a_real_encoder_sends_with_the_dynamic_table(huffman: bool) -> None:
    enc, dec = hyper.Encoder(), Decoder()
    for _ in range(3):  # later blocks refer to entries the first ones indexed
        assert dec.decode(enc.encode(REQUEST, huffman=huffman)) == REQUEST
    changed = [*REQUEST[:-2], ("x-doordash-team", "be"), ("x-other", "é")]
    assert dec.decode(enc.encode(changed, huffman=huffman)) == changed


def test_table_size_update_evicts_and_is_bounded() -> None:
    enc, dec = hyper.Encoder(), Decoder(max_table_size=4096)
    dec.decode(enc.encode(REQUEST))
    enc.header_table_size = 0
    assert dec.decode(enc.encode(REQUEST)) == REQUEST
    with pytest.raises(HpackError):
        dec.decode(encode_int(8192, 5, 0x20))  # above what we advertised


def test_zero_size_table_rejects_dynamic_references() -> None:
    with pytest.raises(HpackError):
        Decoder(max_table_size=0).decode(encode_int(62, 7, 0x80))


@pytest.mark.parametrize(
    "block",
    [b"\x80", b"\xff\xff\xff\xff\xff\xff\xff", b"\x00\x05ab", b"\x00\x7f", b"\x00\x81\xff\x00"],
)
def test_malformed_blocks_are_errors(block: bytes) -> None:
    with pytest.raises(HpackError):
        Decoder().decode(block)


def test_header_list_size_is_bounded() -> None:
    with pytest.raises(HpackError):
        Decoder(max_header_list_size=100).decode(encode_header("x-big", "v" * 200))


def test_encoded_blocks_decode_with_a_real_decoder_and_need_no_state() -> None:
    headers = [(":path", "/a/B"), ("grpc-status", "0"), ("grpc-message", "100%25 done"), ("x-bin", b"\x00\x01")]
    block = REQUEST_PREFIX + encode_headers(headers)
    for _ in range(2):  # a fresh and a used decoder agree: nothing was indexed
        decoded = hyper.Decoder().decode(block, raw=True)
        assert decoded[2:] == [(k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in headers]
    assert hyper.Decoder().decode(RESPONSE_HEADERS_200) == [(":status", "200"), ("content-type", "application/grpc")]


@pytest.mark.parametrize("value", [0, 14, 15, 126, 127, 128, 1337, 2**20])
def test_integers_round_trip(value: int) -> None:
    name = "x-" + "n" * value if value < 2000 else "x-n"
    block = encode_header(name, "v")
    assert hyper.Decoder().decode(block) == [(name, "v")]
    assert Decoder().decode(block) == [(name, "v")]
    assert encode_int(value, 4)[0] == min(value, 15)


# -- the block cache ----------------------------------------------------------------------------

INDEXED_62 = encode_int(62, 7, 0x80)  # "the newest dynamic-table entry": its meaning moves with the table


def insert(name: str, value: str) -> bytes:
    """A literal with incremental indexing and a new name (§6.2.1)."""
    return b"\x40" + encode_int(len(name), 7) + name.encode() + encode_int(len(value), 7) + value.encode()


def test_a_repeated_block_decodes_from_the_cache_until_the_table_changes() -> None:
    dec = Decoder()
    dec.decode(insert("x-a", "1"))
    assert dec.decode(INDEXED_62) == [("x-a", "1")]
    assert dec.decode(INDEXED_62) == [("x-a", "1")]  # from the cache
    dec.decode(insert("x-b", "2"))  # the newest entry is now another one
    assert dec.decode(INDEXED_62) == [("x-b", "2")]
    dec.decode(encode_int(0, 5, 0x20))  # a size update empties the table
    with pytest.raises(HpackError):
        dec.decode(INDEXED_62)


def test_blocks_that_insert_are_decoded_every_time() -> None:
    dec, block = Decoder(), insert("x-a", "1")
    dec.decode(block)
    dec.decode(block)  # applied again: a second copy of the entry
    assert dec.decode(INDEXED_62 + encode_int(63, 7, 0x80)) == [("x-a", "1"), ("x-a", "1")]


def test_cached_lists_are_not_shared_with_callers() -> None:
    dec, block = Decoder(), REQUEST_PREFIX + encode_header("x-a", "1")
    dec.decode(block).append(("x-junk", ""))
    assert dec.decode(block) == [(":method", "POST"), (":scheme", "http"), ("x-a", "1")]


def test_a_real_encoders_blocks_stay_correct_through_the_cache() -> None:
    enc, dec = hyper.Encoder(), Decoder(max_table_size=256)
    enc.header_table_size = 256  # small: entries get evicted
    calls = [REQUEST, [*REQUEST[:-2], ("x-doordash-team", "be")], [*REQUEST, ("x-big", "v" * 150)]]
    for _ in range(4):
        for headers in calls:
            assert dec.decode(enc.encode(headers)) == headers


def test_zero_size_table_caches_blocks_with_insertions() -> None:
    dec, block = Decoder(max_table_size=0), insert("grpc-status", "0")
    assert dec.decode(block) == [("grpc-status", "0")]
    assert dec.decode(block) == [("grpc-status", "0")]
    assert dec._blocks  # nothing changed: the block was kept
