# The C walk of engine/_content_digest.c.
def scan(
    buffer: bytes | bytearray | memoryview, out: list[bytes] | None = None, /
) -> tuple[int, int, int, int]:
    """(high, low, count, end): the documents' XXH3-128 sum modulo 2**128 in two 64-bit halves,
    their number, and where the walk stopped."""
