// Package modalpb holds the protobuf and gRPC code for Modal's control plane
// (modal.client.ModalClient) and task command router
// (modal.task_command_router.TaskCommandRouter). The .proto files are ours,
// trimmed to what the driver and its fake use; the Go code beside them is
// generated and committed, so building needs no protoc.
//
// Regenerate (protoc 3.21+, protoc-gen-go v1.36.12, protoc-gen-go-grpc v1.6.2):
//
//	go generate ./providers/modal/internal/modalpb
package modalpb

//go:generate protoc -Imodal_proto=. --go_out=. --go_opt=module=github.com/mcp-sandbox/mcp-sandbox/providers/modal/internal/modalpb --go-grpc_out=. --go-grpc_opt=module=github.com/mcp-sandbox/mcp-sandbox/providers/modal/internal/modalpb modal_proto/api.proto modal_proto/task_command_router.proto
