"""The service stacks (project mlops-services) and the services they deploy."""
