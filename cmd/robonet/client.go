package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
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

// askEvery publishes one query that every node answers (rn.sys.<query>, no
// queue group) with the JSON of req (nil: empty), and decodes the answers
// into T until want arrived or 3 s passed. An answer carrying an error is
// the error; no answer at all is one too.
func askEvery[T any](ctx context.Context, c *mesh.Client, query string, req any, want int) ([]T, error) {
	var data []byte
	if req != nil {
		var err error
		if data, err = json.Marshal(req); err != nil {
			return nil, err
		}
	}
	nc := c.Conn()
	inbox := nc.NewInbox()
	ch := make(chan *nats.Msg, want+16)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subjects.Query(query), inbox, data); err != nil {
		return nil, err
	}
	var out []T
	wait := time.NewTimer(3 * time.Second)
	defer wait.Stop()
	for len(out) < want {
		select {
		case m := <-ch:
			var rep wire.Reply
			if wire.Decode(m.Data, &rep) != nil {
				continue
			}
			if rep.Error != nil {
				return out, fmt.Errorf("%s: %w", query, rep.Error)
			}
			var r T
			if wire.Decode(rep.Data, &r) == nil {
				out = append(out, r)
			}
		case <-wait.C:
			if len(out) == 0 {
				return nil, fmt.Errorf("%s: no node answered within 3s", query)
			}
			return out, nil
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
	return out, nil
}
