"""Create the scale-out stack's S3 buckets if missing (compose one-shot `s3-buckets`).

    python create_buckets.py BUCKET [BUCKET ...]

Endpoint and credentials from the standard AWS_ENDPOINT_URL / AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY environment variables (never printed).
"""

from __future__ import annotations

import os
import sys
import time

import boto3
from botocore.exceptions import BotoCoreError, ClientError


def main(buckets: list[str]) -> int:
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    for attempt in range(30):
        try:
            existing = {bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])}
            break
        except (BotoCoreError, ClientError) as error:
            if attempt == 29:
                print(f"s3-buckets: store not reachable: {type(error).__name__}", file=sys.stderr)
                return 1
            time.sleep(2)
    for name in buckets:
        if name in existing:
            print(f"s3-buckets: {name} exists")
        else:
            s3.create_bucket(Bucket=name)
            print(f"s3-buckets: {name} created")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
