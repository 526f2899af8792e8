"""``serve``: an htsget server over datasets, for htslib, IGV, igv.js and htsget clients."""

from __future__ import annotations

import os
import sys

import click

from ..errors import UsageError
from .app import cli
from .common import CONTEXT, storage_options


@cli.command(context_settings=CONTEXT)
@storage_options
@click.argument("target", metavar="PREFIX_OR_DATASET")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--token", default=None, metavar="TOKEN",
              help="Require 'Authorization: Bearer TOKEN' (tickets pass it on to their data URLs). "
                   "Prefer --token-file or BAMS3_SERVE_TOKEN: a command line is visible to other users.")
@click.option("--token-file", type=click.Path(dir_okay=False, exists=True), default=None, metavar="FILE",
              help="Read the bearer token from FILE (its first line).")
@click.option("--base-url", default=None, metavar="URL",
              help="The URL clients reach this server at, for the data URLs in tickets (behind a reverse "
                   "proxy); default: the URL each request came to.")
@click.option("--access-log", default=None, metavar="FILE",
              help="Append one line per request to FILE ('-': stderr). Tokens are never written.")
@click.option("--viewer", is_flag=True,
              help="Also a page at / listing the datasets, each opening in igv.js at a locus "
                   "(/view/ID?locus=chr1:1-10000; with a token: .../#token=TOKEN, never sent to the server).")
@click.option("--igv-js", default=None, metavar="URL",
              help="Where the viewer's pages load igv.js from (default: the published igv.js 3.8.10 build).")
@click.option("-l", "--level", default=6, show_default=True, type=click.IntRange(1, 12),
              help="BGZF compression level of the data sent (libdeflate's 1-12; 1 is fastest).")
@click.option("-@", "--threads", "workers", default=4, show_default=True, type=click.IntRange(1, 256),
              help="Concurrent chunk fetches per request.")
def serve(target, host, port, token, token_file, base_url, access_log, viewer, igv_js, level, workers):
    """Serve the datasets under PREFIX (or one DATASET) over GA4GH htsget 1.3 (reads, BAM), so
    that samtools, pysam, IGV, igv.js and htsget clients read them as BAM files.

    \b
    /reads/ID is PREFIX/ID.bams3 or PREFIX/ID/ (one dataset: ID is its name without .bams3).
    Coordinates are htsget's: 0-based, end exclusive. `fields` (e.g.
    QNAME,FLAG,RNAME,POS,MAPQ) leaves the other columns unread; `tags=` leaves the tags
    unread.

    \b
    Examples:
      bams3 serve s3://bucket/cohort/ --port 8080
      samtools view -c 'http://127.0.0.1:8080/reads/sample1?referenceName=chr1&start=999999&end=2000000'
      bams3 serve sample.bams3 --token-file token.txt --access-log access.log
      bams3 serve ./datasets --viewer     # then open http://127.0.0.1:8080/
    """
    from ..serve import IGV_JS, run

    if token and token_file:
        raise UsageError("give --token or --token-file, not both")
    if token_file:
        with open(token_file, encoding="utf-8") as f:
            token = f.readline().strip()
        if not token:
            raise UsageError(f"{token_file}: no token on its first line")
    token = token or os.environ.get("BAMS3_SERVE_TOKEN") or None
    log = None
    if access_log == "-":
        log = sys.stderr
    elif access_log:
        log = open(access_log, "a", encoding="utf-8")  # noqa: SIM115 - open for the life of the server
    click.echo(f"bams3: serving {target} over htsget at http://{host}:{port}/reads/ (Ctrl-C stops)", err=True)
    if igv_js and not viewer:
        raise UsageError("--igv-js is for the viewer: add --viewer")
    run(target, host=host, port=port, token=token, base_url=base_url, access_log=log, workers=workers, level=level,
        viewer=viewer, igv_js=igv_js or IGV_JS)
