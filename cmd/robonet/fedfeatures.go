package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/robonet-mesh/robonet/federation"
	"github.com/robonet-mesh/robonet/node"
)

// startFedCommands composes the federated-command features onto a started
// node (DESIGN.md: features run beside the node, which never imports
// them): on every node of a federated swarm an ambassador, and on a hub's
// nodes the publisher that hands the swarm's identities down (it sends
// only while its node leads). The returned stop shuts them down; call it
// before the node's Shutdown.
func startFedCommands(ctx context.Context, n *node.Node, log *slog.Logger) (stop func(context.Context), err error) {
	var stops []func(context.Context) error
	stop = func(ctx context.Context) {
		for i := len(stops) - 1; i >= 0; i-- {
			_ = stops[i](ctx)
		}
	}
	if !n.Federated() {
		return stop, nil
	}
	amb, err := federation.NewAmbassador(federation.AmbassadorOptions{Node: n, Logger: log})
	if err != nil {
		return stop, fmt.Errorf("federated commands: %w", err)
	}
	if err := amb.Start(ctx); err != nil {
		return stop, fmt.Errorf("federated commands: %w", err)
	}
	stops = append(stops, amb.Shutdown)
	if n.IsHub() {
		pub, err := federation.NewAuthority(federation.AuthorityOptions{Node: n, Logger: log})
		if err != nil {
			stop(ctx)
			return func(context.Context) {}, fmt.Errorf("federated identities: %w", err)
		}
		if err := pub.Start(ctx); err != nil {
			stop(ctx)
			return func(context.Context) {}, fmt.Errorf("federated identities: %w", err)
		}
		stops = append(stops, pub.Shutdown)
	}
	return stop, nil
}
