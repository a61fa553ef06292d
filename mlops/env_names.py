"""Environment variable names, one definition each: the stacks set them on the Lambdas and
the code in those Lambdas (``mlops.services``, ``mlops.settings``) reads them.

``tests/infra/test_environment.py`` checks, on the synthesized templates, that each
function's code reads only variables its stack sets (or that Lambda itself sets).
"""

from __future__ import annotations

# The app's resources, set by the stacks.
INCOMING_BUCKET = "INCOMING_BUCKET"
VALIDATED_BUCKET = "VALIDATED_BUCKET"
QUARANTINE_BUCKET = "QUARANTINE_BUCKET"
ARTIFACTS_BUCKET = "ARTIFACTS_BUCKET"
CAPTURE_BUCKET = "CAPTURE_BUCKET"
KMS_KEY_ARN = "KMS_KEY_ARN"
SAGEMAKER_ROLE_ARN = "SAGEMAKER_ROLE_ARN"
CODE_URI = "CODE_URI"  # the SageMaker code bundle (sourcedir.tar.gz asset)
CODE_HASH = "CODE_HASH"
TRAINING_IMAGE_URI = "TRAINING_IMAGE_URI"

# Set by Lambda itself in every function (reserved: a stack cannot set it).
AWS_REGION = "AWS_REGION"
LAMBDA_RUNTIME_VARIABLES = frozenset({AWS_REGION})

# Outside Lambda only (tests, the CLI, a checkout): where the model configs are. On Lambda
# the core layer ships them and no stack sets it.
MLOPS_CONFIG_DIR = "MLOPS_CONFIG_DIR"

# Read by Powertools itself (Logger, Metrics, Tracer).
POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
POWERTOOLS_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
POWERTOOLS_LOG_LEVEL = "POWERTOOLS_LOG_LEVEL"
POWERTOOLS_TRACE_DISABLED = "POWERTOOLS_TRACE_DISABLED"
POWERTOOLS_LOGGER_LOG_EVENT = "POWERTOOLS_LOGGER_LOG_EVENT"
POWERTOOLS_VARIABLES = frozenset(
    {
        POWERTOOLS_SERVICE_NAME,
        POWERTOOLS_METRICS_NAMESPACE,
        POWERTOOLS_LOG_LEVEL,
        POWERTOOLS_TRACE_DISABLED,
        POWERTOOLS_LOGGER_LOG_EVENT,
    }
)


def powertools(service: str, namespace: str, log_level: str = "INFO") -> dict[str, str]:
    """The Powertools settings of one function: its service name, metrics namespace and log level."""
    return {
        POWERTOOLS_SERVICE_NAME: service,
        POWERTOOLS_METRICS_NAMESPACE: namespace,
        POWERTOOLS_LOG_LEVEL: log_level,
    }
