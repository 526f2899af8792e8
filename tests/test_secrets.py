"""Credentials and signatures never appear in any output: every verb on S3, with --trace
where it exists, with wrong credentials, and with BAMS3_DEBUG tracebacks, is grepped."""

from __future__ import annotations

import os
import subprocess
import sys

import bams3

from .test_cli import EXAMPLE

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY-s3cr3t"
KEY_ID = "AKIAIOSFODNN7EXAMPLE"
MARKERS = ("X-Amz-Signature", "Signature=", "Authorization:", "AWS4-HMAC-SHA256 Credential")


def _run(args, env, ok: bool = False):
    p = subprocess.run([sys.executable, "-m", "bams3.cli", *args], capture_output=True, text=True, env=env,
                       timeout=300)
    if ok:
        assert p.returncode == 0, (args, p.stderr)
    return p.stdout + p.stderr


def _clean(text: str, secret: str = SECRET, key_id: str = KEY_ID) -> None:
    assert secret not in text and key_id not in text
    for m in MARKERS:
        assert m not in text, m


def test_no_verb_prints_credentials(s3_server, tmp_path):
    # moto accepts any key pair: use ones that look real, to grep for them
    env = {**os.environ, **s3_server["env"], "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
    url = f"s3://{s3_server['bucket']}/secrets/s.bams3"
    samples = tmp_path / "samples.txt"
    samples.write_text(f"s\t{url}\n")
    outputs = [
        _run(["convert", EXAMPLE, url, "--force", "--trace", "--json"], env, ok=True),
        _run(["query", url, "chr1:1-100000", "--trace"], env, ok=True),
        _run(["query", url, "chr1", "-c", "--trace", "--json"], env, ok=True),
        _run(["stats", url, "--trace", "--json"], env, ok=True),
        _run(["coverage", url, "--bin", "1M", "--trace"], env, ok=True),
        _run(["verify", url, "--deep", "--trace"], env, ok=True),
        _run(["to-bam", url, str(tmp_path / "b.bam"), "--trace"], env, ok=True),
        _run(["ls", f"s3://{s3_server['bucket']}/secrets/", "--trace"], env, ok=True),
        _run(["cohort", "count", "chr1", "--from", str(samples), "--trace"], env, ok=True),
        _run(["cohort", "stats", "--from", str(samples), "--trace"], env, ok=True),
    ]
    assert all("trace: " in text for text in outputs)  # every verb traced its requests
    for text in outputs:
        _clean(text)


def test_errors_and_debug_tracebacks_never_print_credentials(s3_server, tmp_path):
    url = f"s3://{s3_server['bucket']}/secrets/e.bams3"
    bams3.convert(EXAMPLE, url, force=True)
    base = {**os.environ, **s3_server["env"]}
    cases = [
        ({"AWS_SECRET_ACCESS_KEY": SECRET, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
         ["stats", url]),
        ({"AWS_SECRET_ACCESS_KEY": SECRET, "AWS_ACCESS_KEY_ID": KEY_ID}, ["stats", "s3://no-such-bucket/x"]),
        ({"AWS_SECRET_ACCESS_KEY": SECRET, "AWS_ACCESS_KEY_ID": KEY_ID}, ["query", url, "chrZ"]),
        ({"AWS_SECRET_ACCESS_KEY": SECRET, "AWS_ACCESS_KEY_ID": KEY_ID, "BAMS3_DEBUG": "1",
          "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, ["query", url, "chr1", "-c", "--trace"]),
    ]
    for extra, args in cases:
        text = _run(args, {**base, **extra})
        assert text.strip()  # something was said
        _clean(text)


def test_redaction_is_the_last_line_of_defence(monkeypatch):
    from bams3.cli import redact

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    text = (f"failed: <AWSAccessKeyId>{KEY_ID}</AWSAccessKeyId> key {SECRET} "
            "https://b.s3.amazonaws.com/k?X-Amz-Signature=abcdef0123&X-Amz-Credential=AKIA/2026 "
            "Authorization: AWS4-HMAC-SHA256 Credential=AKIAXYZ/20261124/us-east-1/s3/aws4_request, Signature=ff00")
    out = redact(text)
    assert SECRET not in out and KEY_ID not in out
    assert "abcdef0123" not in out and "ff00" not in out and "AKIAXYZ" not in out
    assert out.startswith("failed: <AWSAccessKeyId>***</AWSAccessKeyId> key ***")


def test_passwords_in_urls_are_masked_whatever_they_hold():
    from bams3.cli import redact

    for password in ("hunter2", "p@ss", "pa/ss", "hun ter2", "a:b@c/d e"):
        for scheme in ("https", "s3", "az"):
            text = f"cannot read {scheme}://alice:{password}@host.example/data/x.bams3: refused"
            out = redact(text)
            assert password not in out and "alice" not in out, out
            assert out == f"cannot read {scheme}://***@host.example/data/x.bams3: refused", out
    two = redact("https://a:p@ss@h1/x then https://b:q/q@h2/y")
    assert two == "https://***@h1/x then https://***@h2/y", two
    # keys and user names without a password say where the failure was
    assert redact("missing s3://bucket/run@v2.bams3/_metadata.json") == \
        "missing s3://bucket/run@v2.bams3/_metadata.json"
    assert redact("see https://github.com/x\nmail a@b") == "see https://github.com/x\nmail a@b"


def test_presigned_urls_are_refused_without_echoing_their_signature(s3_server, tmp_path):
    client = s3_server["client"]
    client.put_object(Bucket=s3_server["bucket"], Key="secrets/in.bam", Body=open(EXAMPLE, "rb").read())
    signed = client.generate_presigned_url("get_object", ExpiresIn=600,
                                           Params={"Bucket": s3_server["bucket"], "Key": "secrets/in.bam"})
    key_id = s3_server["env"]["AWS_ACCESS_KEY_ID"]
    signature = signed.split("Signature=", 1)[1].split("&", 1)[0]
    assert key_id in signed
    for args in (["convert", signed, str(tmp_path / "o"), "--trace"], ["stats", signed], ["query", signed, "chr1", "-c"]):
        p = subprocess.run([sys.executable, "-m", "bams3.cli", *args], capture_output=True, text=True, timeout=60)
        assert p.returncode == 2, p.stderr
        assert "presigned URLs) are not supported" in p.stderr and p.stderr.count("\n") == 1 or "--trace" in args
        out = p.stdout + p.stderr
        assert key_id not in out and signature not in out
    assert not (tmp_path / "o").exists()
