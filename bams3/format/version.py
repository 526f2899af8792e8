"""The format's name and version (docs/format.md, "Versions")."""

from ..metacheck import FORMAT_NAME, MAX_VERSION  # noqa: F401 (read there, before numpy is imported)

FORMAT_VERSION = 2  # what a conversion writes
SHARDED_VERSION = 3  # what a sharded conversion writes
# v2: _metadata.json carries a SHA-256 of its content; the chunk table records a CRC32 of each
# chunk's header and column directory (head_crc); a count slot's CRC32 covers its header too.
# v1 datasets (none of these) are still read.
# v3: as v2, and the chunk table numbers each chunk's object (its "object" field), so that
# shards converted apart can write their chunks without knowing how many come before them.
# Written only by a sharded conversion; a reader of v2 refuses it (its version is newer).
