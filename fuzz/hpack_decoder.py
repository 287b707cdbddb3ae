"""Fuzz target: the HPACK decoder (request header blocks from clients).

Any bytes decode to a header list or raise ``HpackError``; the dynamic table stays within its
size, and the list within the header-list limit.

    python fuzz/hpack_decoder.py -max_total_time=600      # by hand
    python fuzz/hpack_decoder.py -max_total_time=8        # what the tests run
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["sparkgate"]):
    from sparkgate.gateway.h2.hpack import Decoder, HpackError

LIST_LIMIT = 8192


def one_input(data: bytes) -> None:
    decoder = Decoder(max_table_size=4096, max_header_list_size=LIST_LIMIT)
    fdp = atheris.FuzzedDataProvider(data)
    while fdp.remaining_bytes():
        block = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 512))
        try:
            headers = decoder.decode(block)
        except HpackError:
            return
        assert sum(len(n) + len(v) + 32 for n, v in headers) <= LIST_LIMIT
        assert decoder._size <= decoder._max_size <= decoder.limit


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
