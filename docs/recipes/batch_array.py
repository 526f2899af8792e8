"""AWS Batch array job: shard k of N counts its slice of the cohort and writes one Parquet part.

Submit with `--array-properties size=N` and the environment:
  SAMPLES=s3://bucket/samples.txt  (NAME<TAB>URL per line)   REGIONS="chr20:10M-11M chr1"
  OUT=s3://bucket/counts/  (a part-00000.parquet per shard)  SHARDS=N
Batch sets AWS_BATCH_JOB_ARRAY_INDEX. Container command: python batch_array.py
"""

import io
import os

import bams3.cohort
from bams3.storage import open_store


def main() -> None:
    index = int(os.environ.get("AWS_BATCH_JOB_ARRAY_INDEX", "0"))
    shards = int(os.environ["SHARDS"])
    samples_url, out_url = os.environ["SAMPLES"], os.environ["OUT"]
    base, name = samples_url.rsplit("/", 1)
    text = open_store(base).get(name).decode()
    samples = [tuple(line.split("\t")) for line in text.splitlines() if line.strip() and not line.startswith("#")]
    mine = samples[index::shards]  # every N-th sample: shards get similar work
    table = bams3.cohort.count(mine, os.environ["REGIONS"].split(), workers=16)
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    open_store(out_url, create=True).put(f"part-{index:05d}.parquet", buf.getvalue())


if __name__ == "__main__":
    main()
