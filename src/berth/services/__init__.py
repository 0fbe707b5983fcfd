"""Behaviour. Services never import grpclib; they raise berth.errors and speak protobuf messages."""
