"""Serve the twin's S3 alone, as the twin serves it (gateway + moto + the data path + the store).

    python -m mlops.twin.s3 WORKDIR BUCKET [BUCKET...]

Prints the endpoint URL, then ``ready`` once the buckets (versioned) are restored; serves until
killed. For benchmarks and fault tests that need the S3 path in a process of its own.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from mlops.twin.gateway import Gateway
from mlops.twin.iam import Principals
from mlops.twin.s3.service import S3Service

ACCOUNT = "000000000000"


def main(argv: list[str]) -> None:
    workdir, buckets = Path(argv[0]), argv[1:]
    service = S3Service(workdir, lambda _event: None, account=ACCOUNT)
    service.start()
    gateway = Gateway(Principals(ACCOUNT))
    gateway.mount_wsgi("s3", service.app)
    print(gateway.start(), flush=True)
    for bucket in buckets:
        service.create_bucket(bucket, versioned=True, eventbridge=False)
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv[1:])
