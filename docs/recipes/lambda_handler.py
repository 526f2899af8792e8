"""AWS Lambda: count regions for a few samples per invocation (fan out from Step Functions,
or call it per sample). Package bams3 in the function's image; give the role s3:GetObject.

Event:  {"samples": [["NA12878", "s3://bucket/NA12878.bams3"], ...], "regions": ["chr20:10M-11M"]}
Return: {"rows": [{"sample": ..., "region": ..., "count": ..., "note": ..., "error": ...}, ...]}
"""

import bams3.cohort


def handler(event, context=None):
    samples = [tuple(s) if isinstance(s, (list, tuple)) else s for s in event["samples"]]
    table = bams3.cohort.count(samples, event["regions"], workers=int(event.get("workers", 8)))
    rows = table.astype(object).where(table.notna(), None).to_dict(orient="records")
    return {"rows": rows}
