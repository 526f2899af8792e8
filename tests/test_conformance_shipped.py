"""Every plugin bams3 ships passes the conformance kit it offers to others."""

from __future__ import annotations

import json
import uuid

import pysam
import pytest

from bams3.conformance.codec import CodecTests
from bams3.conformance.formats import OutputFormatTests, sam_row
from bams3.conformance.store import RawView, StoreTests, store_state_machine


class TestZstd(CodecTests):
    codec_name = "zstd"


class TestQual(CodecTests):
    codec_name = "qual"


class TestConsensus(CodecTests):
    codec_name = "consensus"
    column = "seq"


class TestTags(CodecTests):
    codec_name = "tags"


class TestMates(CodecTests):
    codec_name = "mates"
    column = "next_pos"


class TestNames(CodecTests):
    codec_name = "names"
    column = "read_name"


class TestSam(OutputFormatTests):
    format_name = "sam"

    def read_back(self, path):
        with open(path) as f:
            return [sam_row(line) for line in f if line.strip() and not line.startswith("@")]


class TestBam(OutputFormatTests):
    format_name = "bam"

    def read_back(self, path):
        with pysam.AlignmentFile(path, check_sq=False) as f:
            return [sam_row(r.to_string()) for r in f]


class TestJson(OutputFormatTests):
    format_name = "json"

    def read_back(self, path):
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        return [{"name": r["name"], "flag": r["flag"], "ref": r["ref_name"], "pos": r["ref_pos"],
                 "mapq": r["map_quality"], "cigar": r["cigar"],
                 "next_ref": r["ref_name"] if r["next_ref_name"] == "=" else r["next_ref_name"],
                 "next_pos": r["next_ref_pos"], "tlen": r["length"], "seq": r["seq"], "qual": r["qual"],
                 "tags": r.get("tags", [])} for r in rows]


class S3Raw(RawView):
    """The bucket through boto3, not through bams3's store."""

    def __init__(self, client, bucket: str, prefix: str):
        self.client, self.bucket, self.prefix = client, bucket, prefix + "/"

    def get(self, key):
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def put(self, key, data):
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)

    def keys(self):
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        return {o["Key"][len(self.prefix):] for page in pages for o in page.get("Contents", [])}


class ObstoreRaw(RawView):
    """A container through obstore's own store, not through bams3's."""

    def __init__(self, store):
        self.store = store

    def get(self, key):
        import obstore

        try:
            return bytes(obstore.get(self.store, key).bytes())
        except FileNotFoundError:
            return None

    def put(self, key, data):
        import obstore

        obstore.put(self.store, key, data)

    def keys(self):
        import obstore

        return {o["path"] for batch in obstore.list(self.store) for o in batch}


class TestS3Store(StoreTests):
    @pytest.fixture
    def store_url(self, s3_server):
        return f"s3://{s3_server['bucket']}/conformance/{uuid.uuid4().hex}"

    @pytest.fixture
    def raw(self, store_url, s3_server):
        return S3Raw(s3_server["client"], s3_server["bucket"], store_url.split("/", 3)[3])


class TestAzureStore(StoreTests):
    @pytest.fixture
    def store_url(self, azure_server):
        return f"az://{azure_server['container']}/conformance/{uuid.uuid4().hex}"

    @pytest.fixture
    def raw(self, store_url, azure_server):
        from obstore.store import AzureStore

        return ObstoreRaw(AzureStore(azure_server["container"], prefix=store_url.split("/", 3)[3],
                                     client_options={"allow_http": True}))


_tmp = None


def _local_url():
    import tempfile

    global _tmp
    _tmp = _tmp or tempfile.mkdtemp(prefix="bams3-stateful-")
    return f"{_tmp}/{uuid.uuid4().hex}"


TestLocalStoreStateful = store_state_machine(_local_url).TestCase
TestMemoryStoreStateful = store_state_machine(lambda: f"memory://stateful-{uuid.uuid4().hex}").TestCase


class TestS3StoreStateful(store_state_machine(lambda: f"s3://bams3-test/stateful/{uuid.uuid4().hex}").TestCase):
    @pytest.fixture(autouse=True)
    def _server(self, s3_server):  # the S3 server (and its AWS_* settings) must be up first
        yield


class TestAzureStoreStateful(store_state_machine(lambda: f"az://bams3-test/stateful/{uuid.uuid4().hex}").TestCase):
    @pytest.fixture(autouse=True)
    def _server(self, azure_server):  # Azurite (and its AZURE_* settings) must be up first
        yield


def test_kit_strategies_make_datasets_that_match_samtools(tmp_path):
    """The kit's hypothesis strategies: drawn datasets and regions agree with samtools."""
    import bams3
    from hypothesis import HealthCheck, given, settings

    from bams3.conformance.strategies import datasets, regions

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=datasets(str(tmp_path)), region=regions())
    def check(data, region):
        bam, ds = data
        pysam.index(bam)
        assert bams3.open(ds).count(region) == int(pysam.view("-c", bam, region.replace(",", "")))

    check()
