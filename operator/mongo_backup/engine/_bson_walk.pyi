# The C walks of engine/_bson_walk.c.
def scan(
    buffer: bytes | bytearray | memoryview, out: list[bytes] | None = None, /
) -> tuple[int, int, int, int]:
    """(high, low, count, end): the documents' XXH3-128 sum modulo 2**128 in two 64-bit halves,
    their number, and where the walk stopped."""

def array_documents(array: bytes | bytearray | memoryview, /) -> bytes:
    """The documents of a BSON array of documents, back to back; ValueError(offset) when it is
    malformed."""
