"""edgeq's gRPC transport (installed as `edgeq_server`): thin servicers over the edgeq library."""
