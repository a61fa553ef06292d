"""What the AWS Lambda Python runtime itself provides to a function: the AWS SDK and its dependencies.

One definition for the layer bundling (which leaves these out of the dependency layer, so the layer never
shadows the runtime's SDK) and for the twin (whose Lambda environment holds exactly these, at these
versions, under the function's code and layers). The runtime's SDK version changes with AWS's runtime
updates; this is the one the project is tested with.
"""

from __future__ import annotations

RUNTIME_PACKAGES: dict[str, str] = {
    "boto3": "1.44.8",
    "botocore": "1.44.8",
    "jmespath": "1.1.0",
    "python-dateutil": "2.9.0.post0",
    "s3transfer": "0.19.3",
    "six": "1.17.0",
    "urllib3": "2.8.0",
}


def runtime_pins() -> list[str]:
    return [f"{name}=={version}" for name, version in sorted(RUNTIME_PACKAGES.items())]
