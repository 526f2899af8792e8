"""Child process: decode SAM/CRAM with htslib and write an uncompressed BAM stream
to stdout. Run as ``python -m bams3._htsdecode PATH [REFERENCE] [THREADS]``; PATH ``-`` is stdin.

A separate process, because pysam may hold the GIL while blocked on a full pipe;
it also decodes on a second core. Errors: one line on stderr, exit status 1; htslib's
warnings are on stderr too.
"""

import sys


def main() -> int:
    import signal

    import pysam

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops this child

    path = sys.argv[1]
    reference = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    pysam.set_verbosity(3)  # warnings too: the parent reads them (unknown reference names)
    try:
        with pysam.AlignmentFile(path, "r", reference_filename=reference, threads=threads, check_sq=False) as inp:
            with pysam.AlignmentFile("-", "wbu", template=inp) as out:
                for rec in inp:
                    out.write(rec)
    except BrokenPipeError:
        return 0
    except NotImplementedError:  # pysam: "can not iterate over samfile without header"
        print("no SAM header, and no records htslib can read", file=sys.stderr)
        return 1
    except Exception as exc:
        print(str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
