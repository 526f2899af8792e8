"""The format's name and version (docs/format.md, "Versions")."""

FORMAT_NAME = "bams3"
FORMAT_VERSION = 2
# v2: _metadata.json carries a SHA-256 of its content; the chunk table records a CRC32 of each
# chunk's header and column directory (head_crc); a count slot's CRC32 covers its header too.
# v1 datasets (none of these) are still read.
