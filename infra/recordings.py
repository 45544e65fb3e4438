"""Call recordings: an encrypted, private bucket whose lifecycle is the estate's retention policy.

Recordings of a hunt group that records go under `groups/<group id>/` and expire
after that group's retention; everything else (on-demand recordings, groups that
follow the city-wide policy) goes under `calls/` and follows the city-wide policy.
The prefixes are disjoint because S3 applies the shortest expiration among rules
that match an object.
"""

from __future__ import annotations

import math

import pulumi
import pulumi_aws as aws

from tsunagu.model import Estate, Recording

DEFAULT_PREFIX = "calls/"
DAYS_PER_YEAR = 365.25  # rounding up never deletes a recording a day early, leap days included


def retention_days(years: int) -> int:
    return math.ceil(years * DAYS_PER_YEAR)


def retention_rules(estate: Estate) -> dict[str, int]:
    """Bucket prefix -> days to keep, one per recording hunt group plus the city-wide default."""
    rules = {f"groups/{g.id}/": retention_days(estate.retention_of(g))
             for g in estate.hunt_groups if estate.recording_of(g) is not Recording.NEVER}
    rules[DEFAULT_PREFIX] = retention_days(estate.policies.cdr_retention_years)
    return rules


class RecordingStore(pulumi.ComponentResource):
    def __init__(self, estate: Estate, opts: pulumi.ResourceOptions):
        super().__init__("tsunagu:infra:RecordingStore", "recordings", None, opts)
        child = pulumi.ResourceOptions(parent=self)
        key = aws.kms.Key("recordings", description="Tsunagu call recordings", enable_key_rotation=True,
                          opts=child)
        self.bucket = aws.s3.Bucket("recordings", tags={"tsunagu": "recordings"}, opts=child)
        aws.s3.BucketPublicAccessBlock("recordings", bucket=self.bucket.id, block_public_acls=True,
                                       block_public_policy=True, ignore_public_acls=True,
                                       restrict_public_buckets=True, opts=child)
        aws.s3.BucketServerSideEncryptionConfiguration(
            "recordings", bucket=self.bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms",
                                                                "kms_master_key_id": key.arn},
                    "bucket_key_enabled": True}], opts=child)
        self.prefixes = retention_rules(estate)
        aws.s3.BucketLifecycleConfiguration(
            "recordings", bucket=self.bucket.id,
            rules=[{"id": prefix.rstrip("/").replace("/", "-"), "status": "Enabled",
                    "filter": {"prefix": prefix}, "expiration": {"days": days}}
                   for prefix, days in self.prefixes.items()], opts=child)
        self.register_outputs({"bucket": self.bucket.bucket})
