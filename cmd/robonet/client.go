package main

import (
	"context"
	"encoding/json"
	"io"
	"path/filepath"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
)

// connect opens a client with the credentials the flags point at.
func (g *globals) connect(ctx context.Context) (*mesh.Client, error) {
	seed := g.nkey
	if seed == "" {
		seed = filepath.Join(g.data, node.OperatorSeedFile)
	}
	return mesh.Connect(ctx, mesh.Options{Server: g.server, SeedFile: seed})
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
