# The scikit-learn framework image the app's stacks name (sagemaker-core's URI for sklearn 1.9-0, us-east-1).
SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.9-0-cpu-py3"
