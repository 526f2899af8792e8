#!/usr/bin/env bash
# One region over a cohort with GNU parallel: one `bams3 query -c` per sample, 16 at a time.
#   parallel.sh samples.txt chr20:10M-11M > counts.tsv
# samples.txt: NAME<TAB>URL per line. (`bams3 cohort count REGION --from samples.txt` does the
# same in one process, with retries and error rows; this is for pipelines built on parallel.)
set -euo pipefail
samples=${1:?usage: parallel.sh samples.txt REGION}
region=${2:?usage: parallel.sh samples.txt REGION}
printf 'sample\tregion\tcount\n'
parallel -j "${JOBS:-16}" --colsep '\t' --keep-order \
  'printf "%s\t%s\t%s\n" {1} '"'$region'"' "$(bams3 query {2} '"'$region'"' -c)"' :::: "$samples"
