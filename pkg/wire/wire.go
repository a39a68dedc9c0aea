// Package wire is the contract between the master and a worker process that
// both sides must agree on: the go-plugin handshake, the plugin set that maps
// the gRPC Worker service, and the environment the master passes to a worker.
package wire

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "github.com/atomicflow/atomicflow/proto/atomicflow/v1"
)

// Handshake is checked by both sides before any RPC. A binary that is not
// an Atomic Flow worker fails it, and the master reports a bad worker binary.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "ATOMICFLOW_PLUGIN",
	MagicCookieValue: "5c1a6a52-worker-v1",
}

// PluginName is the name the worker service is dispensed under.
const PluginName = "worker"

// Environment variables the master sets for each worker process.
const (
	EnvSlot       = "ATOMICFLOW_WORKER_SLOT"
	EnvGeneration = "ATOMICFLOW_WORKER_GENERATION"
	EnvShm        = "ATOMICFLOW_WORKER_SHM"
	// EnvHalf is the half (0 or 1) of the slot the worker writes; a reload
	// runs the new process in the other half.
	EnvHalf     = "ATOMICFLOW_WORKER_HALF"
	EnvCapacity = "ATOMICFLOW_WORKER_CAPACITY"
	// EnvLifeline names the file descriptor of the read end of a pipe whose
	// write end only the master holds: EOF on it means the master is gone.
	EnvLifeline = "ATOMICFLOW_WORKER_LIFELINE_FD"
)

// Exit codes of a worker process that refuses to run.
const (
	// ExitBadEnv: the worker was started without the master's environment.
	ExitBadEnv = 3
	// ExitBadRegion: the shared region's header does not match.
	ExitBadRegion = 4
	// ExitMasterGone: the lifeline pipe closed.
	ExitMasterGone = 5
	// ExitStartHook: the OnStart hook failed.
	ExitStartHook = 6
)

// Plugin maps the Worker gRPC service onto go-plugin. The master uses it
// with a nil Impl; a worker sets Impl to its server.
type Plugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl pb.WorkerServer
}

var _ plugin.GRPCPlugin = (*Plugin)(nil)

// GRPCServer registers the worker's service.
func (p *Plugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterWorkerServer(s, p.Impl)
	return nil
}

// GRPCClient returns the master's client for the worker's service.
func (p *Plugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return pb.NewWorkerClient(c), nil
}

// Plugins returns the plugin set for a client (impl nil) or a server.
func Plugins(impl pb.WorkerServer) plugin.PluginSet {
	return plugin.PluginSet{PluginName: &Plugin{Impl: impl}}
}
