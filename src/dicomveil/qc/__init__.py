"""Quality control: the independent verifier, the diff of input and output, the audit trail."""
