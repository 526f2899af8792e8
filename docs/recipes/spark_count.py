"""Spark (EMR, Databricks, or local): samples spread over partitions, each partition counting
its samples with bams3's Python API (mapPartitions), the result a Spark DataFrame.

  spark-submit spark_count.py samples.txt chr20:10M-11M [REGION ...] [--out out.parquet]
  python spark_count.py samples.txt chr20:10M-11M       # local mode: pip install pyspark
"""

import sys


def count_partition(rows, regions):
    import bams3.cohort

    samples = [(r[0], r[1]) for r in rows]
    if not samples:
        return iter(())
    table = bams3.cohort.count(samples, regions, workers=8)
    return ((str(s), str(r), None if c is None or c != c else int(c), n or "", e or "")
            for s, r, c, n, e in table.astype(object).itertuples(index=False))


def main(samples_txt: str, regions: list, out: str | None = None) -> None:
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("bams3-cohort-count").getOrCreate()
    lines = [line.rstrip("\n").split("\t") for line in open(samples_txt) if line.strip()]
    rdd = spark.sparkContext.parallelize(lines, max(1, len(lines) // 25))
    counts = rdd.mapPartitions(lambda rows: count_partition(rows, regions))
    df = spark.createDataFrame(counts, "sample string, region string, count long, note string, error string")
    if out:
        df.write.mode("overwrite").parquet(out)
    else:
        df.orderBy("sample", "region").show(truncate=False)
    spark.stop()


if __name__ == "__main__":
    args = sys.argv[1:]
    out = None
    if "--out" in args:
        i = args.index("--out")
        out = args[i + 1]
        del args[i : i + 2]
    main(args[0], args[1:], out)
