"""durabletask's gRPC protocol (`TaskHubSidecarService`, what Dapr's workflow SDKs speak to daprd),
served for Dapr SDK clients: `headrace grpc` (docs/grpc.md).

A front end like the REST API, over the same `Gateway`/`WorkflowCommands`, hence under `api/`.
grpcio is the optional `grpc` extra: nothing outside this package imports it.
"""
