"""Model architectures edgeq ships itself, so tests and demos need no model hub."""
