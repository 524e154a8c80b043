"""The sancodec gRPC server (grpc.aio + ONNX Runtime)."""
