"""durabletask's gRPC protocol, as Dapr's SDKs speak it: generated code, do not edit.

Generated with grpcio-tools 1.85.1 from the `.proto` files in `proto/`, which are
github.com/dapr/durabletask-protobuf at commit 7d7391e4044252f4abcf55b17634a65de744f4ee (MIT, (c)
Microsoft): the commit whose stubs dapr-ext-workflow 1.18.3 vendors (its
`_durabletask/internal/PROTO_SOURCE_COMMIT_HASH`). Regenerate with `regenerate.sh`; docs/grpc.md
says why the repository compiles the protocol rather than depending on `durabletask-dapr`.
"""
