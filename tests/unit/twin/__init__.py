"""What the twin's unit tests share: the image the stacks name, and a tiny model server for endpoints."""

import io
import tarfile

# The scikit-learn framework image the app's stacks name (sagemaker-core's URI for sklearn 1.9-0, us-east-1).
SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.9-0-cpu-py3"

# inference.py of a model whose model.json holds {"factor": f}: it answers x * f ("broken": it fails)
FACTOR_INFERENCE = """
import json
def model_fn(d):
    return json.load(open(d + "/model.json"))
def input_fn(body, ct):
    return json.loads(body)
def predict_fn(x, m):
    if m.get("broken"):
        raise RuntimeError("broken model")
    return x * m["factor"]
def output_fn(p, accept):
    return json.dumps(p)
"""


def tar_gz(files: dict[str, str]) -> bytes:
    """A .tar.gz of text files, as SageMaker's model and code archives are."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# The XGBoost framework image a model with its own code may name (sagemaker-core's URI for 3.2-0, us-east-1).
XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.2-0"
