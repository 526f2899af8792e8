"""Child process: ``samtools sort`` through pysam. Run as ``python -m bams3._htssort ARGS...``.

A separate process, because pysam holds the GIL while samtools runs. htslib's warnings go
to stderr as they come (the parent reads them: unknown reference names); a failure ends
with samtools' own last message, as one line, and exit status 1.
"""

import signal
import sys


def main() -> int:
    import pysam

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops this child
    pysam.set_verbosity(3)
    try:
        pysam.sort(*sys.argv[1:], catch_stdout=False)
    except pysam.SamtoolsError as exc:
        from bams3.errors import samtools_message

        print(samtools_message(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
