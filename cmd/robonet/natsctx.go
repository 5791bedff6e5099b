package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
)

// natsContext is the part of the `nats` CLI's context file robonet writes
// (~/.config/nats/context/<name>.json).
type natsContext struct {
	Description string `json:"description"`
	URL         string `json:"url"`
	NKey        string `json:"nkey"`
}

func newNatsContextCmd(g *globals) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "nats-context",
		Short: "Write a context for the stock `nats` CLI (then: nats --context robonet sub 'rn.>')",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := subjects.ValidToken(name); err != nil {
				return fmt.Errorf("--context: %w", err)
			}
			seed := g.nkey
			if seed == "" {
				seed = filepath.Join(g.data, node.OperatorSeedFile)
			}
			seed, err := filepath.Abs(seed)
			if err != nil {
				return err
			}
			if _, err := mesh.ReadSeed(seed); err != nil {
				return fmt.Errorf("%w (run 'robonet up' first, or pass --nkey)", err)
			}
			dir, err := natsContextDir()
			if err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			path := filepath.Join(dir, name+".json")
			data, _ := json.MarshalIndent(natsContext{
				Description: "robonet swarm via " + g.server,
				URL:         g.server,
				NKey:        seed,
			}, "", "  ")
			if err := os.WriteFile(path, append(data, '\n'), 0o600); err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), map[string]string{"context": name, "path": path, "url": g.server, "nkey": seed})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\nnow: nats --context %s sub 'rn.>'\n", path, name)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "context", "robonet", "context name")
	return cmd
}

// natsContextDir is where the nats CLI looks for contexts.
func natsContextDir() (string, error) {
	if x := os.Getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "nats", "context"), nil
	}
	h, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the nats context directory: %w", err)
	}
	return filepath.Join(h, ".config", "nats", "context"), nil
}
