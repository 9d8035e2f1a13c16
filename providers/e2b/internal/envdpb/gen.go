// Package envdpb holds the protobuf and Connect code for E2B's envd daemon
// (process and filesystem services). The .proto files are ours; the Go code
// beside them is generated and committed, so building needs no protoc.
//
// Regenerate (protoc 3.21+, protoc-gen-go v1.36.12, protoc-gen-connect-go v1.21.1):
//
//	go generate ./providers/e2b/internal/envdpb
package envdpb

//go:generate protoc -I . --go_out=. --go_opt=paths=source_relative --connect-go_out=. --connect-go_opt=paths=source_relative process/process.proto filesystem/filesystem.proto
