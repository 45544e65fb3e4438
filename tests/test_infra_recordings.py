"""The recordings bucket: private, encrypted, and kept exactly as long as the estate says."""

from __future__ import annotations

import pytest

from infra.recordings import retention_days
from tsunagu.model import Recording

from .infra_stacks import STACKS, deployed, estate_of


def test_retention_in_days_never_deletes_a_day_early():
    assert retention_days(1) == 366
    assert retention_days(3) == 1096  # 3 years hold at most one 29 February
    assert retention_days(5) == 1827  # 5 years hold at most two


@pytest.mark.parametrize("stack", STACKS)
def test_lifecycle_expires_each_recording_group_after_its_retention(stack):
    run, estate = deployed(stack), estate_of(stack)
    lifecycle = run.named("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "recordings")
    rules = {r["filter"]["prefix"]: r for r in lifecycle.inputs["rules"]}
    expected = {f"groups/{g.id}/": retention_days(estate.retention_of(g))
                for g in estate.hunt_groups if estate.recording_of(g) is not Recording.NEVER}
    expected["calls/"] = retention_days(estate.policies.cdr_retention_years)
    assert {prefix: rule["expiration"]["days"] for prefix, rule in rules.items()} == expected
    assert all(rule["status"] == "Enabled" for rule in rules.values())
    assert run.outputs["recording_retention_days"] == expected


def test_a_group_with_its_own_retention_gets_its_own_rule():
    run = deployed("tiny")
    lifecycle = run.named("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "recordings")
    days = {r["filter"]["prefix"]: r["expiration"]["days"] for r in lifecycle.inputs["rules"]}
    assert days == {"groups/shimin/": 1096, "calls/": 1827}  # shimin keeps 3 years, the city 5


@pytest.mark.parametrize("stack", STACKS)
def test_the_bucket_is_encrypted_with_its_own_key_and_never_public(stack):
    run = deployed(stack)
    bucket = run.named("aws:s3/bucket:Bucket", "recordings")
    encryption = run.named("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                           "recordings")
    default = encryption.inputs["rules"][0]["applyServerSideEncryptionByDefault"]
    key = run.named("aws:kms/key:Key", "recordings").state["arn"]
    assert default == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": key}
    block = run.named("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "recordings")
    assert all(block.inputs[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                                 "restrictPublicBuckets"))
    assert bucket.region == "ap-northeast-1"
