"""What the workflow runs: the expansion of config/config.yaml into runs, shared by both front doors."""
