"""gRPC edge: decode a request, call one service, encode the reply."""
