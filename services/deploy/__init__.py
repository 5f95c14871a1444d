"""The mlops-services Pulumi program: the training job and the model API onto the platform."""
