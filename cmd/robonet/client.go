package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/wire"
)

// connect opens a client with the credentials the flags point at. The node
// it reaches must prove a key the CLI trusts: the node key of the data dir
// (a CLI on a node, as `robonet` runs there by default), or the key pinned
// for the server's address in the known-nodes file, pinned on first use.
func (g *globals) connect(ctx context.Context) (*mesh.Client, error) {
	seed := g.nkey
	if seed == "" {
		seed = filepath.Join(g.data, node.OperatorSeedFile)
	}
	opts := mesh.Options{Server: g.server, SeedFile: seed,
		Notice: func(s string) { fmt.Fprintln(os.Stderr, "robonet: "+s) }}
	if k := dataDirNodeKey(g.data); k != "" {
		opts.NodeKeys = []string{k}
	}
	known, err := mesh.KnownNodesFile()
	if err != nil && len(opts.NodeKeys) == 0 {
		return nil, fmt.Errorf("%w (nowhere to pin node keys: set XDG_CONFIG_HOME or HOME, or run with the node's --data)", err)
	}
	opts.KnownNodes = known
	return mesh.Connect(ctx, opts)
}

// dataDirNodeKey is the public key of the node whose data dir is data, or
// "" when there is none (or it is not readable by this user).
func dataDirNodeKey(data string) string {
	if data == "" {
		return ""
	}
	kp, err := mesh.ReadSeed(filepath.Join(data, node.NodeSeedFile))
	if err != nil {
		return ""
	}
	pub, _ := kp.PublicKey()
	return pub
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// liveCount counts the members that are not offline.
func liveCount(members []wire.Member) int {
	n := 0
	for _, m := range members {
		if m.State != wire.StateOffline {
			n++
		}
	}
	return n
}

// askEvery publishes one signed query that every node answers
// (rn.sys.<query>, no queue group) with the JSON of req (nil: empty), and
// decodes the answers into T until every live one of members (a verified
// registry, from c.Nodes) answered or 3 s passed. An answer counts only
// when signed by a member's registered key; an answer carrying an error is
// the error; no answer at all is one too.
func askEvery[T any](ctx context.Context, c *mesh.Client, query string, req any, members []wire.Member) ([]T, error) {
	got, err := c.QueryAll(ctx, query, req, members, 3*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", query, err)
	}
	if got.Dropped > 0 {
		fmt.Fprintf(os.Stderr, "robonet: %s: %d answers dropped (bad signature, or not a member's registered key)\n", query, got.Dropped)
	}
	var out []T
	for _, a := range got.Answers {
		if a.Error != nil {
			return out, fmt.Errorf("%s: %s (%s): %w", query, a.Name, a.Chevron, a.Error)
		}
		var r T
		if wire.Decode(a.Data, &r) == nil {
			out = append(out, r)
		}
	}
	return out, nil
}
