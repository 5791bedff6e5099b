package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/trust"
)

// IdentityReply is what identity prints with --json.
type IdentityReply struct {
	Pubkey  string `json:"pubkey"`
	Created bool   `json:"created"`
	Data    string `json:"data"`
	// Proof answers --prove: the key's signature of the challenge (with a
	// tag no other signature carries), so whoever asked knows this host
	// holds the key it names.
	Proof string `json:"proof,omitempty"`
}

func newIdentityCmd(g *globals) *cobra.Command {
	var prove string
	cmd := &cobra.Command{
		Use:   "identity",
		Short: "Print this host's node key, creating it in --data if missing (offline)",
		Long: `Prints the public key of the node key in the data dir (<data>/node.nk), creating the key
(mode 0600, the dir 0700) when there is none, exactly as 'robonet up' would on its first start.
It also works while a node runs on that data dir (it reads its key).

An admin binds a one-time token to the key: robonet token create --for <key>.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pub, created, err := node.EnsureIdentity(g.data)
			if err != nil {
				return err
			}
			r := IdentityReply{Pubkey: pub, Created: created, Data: g.data}
			if prove != "" {
				kp, err := mesh.ReadSeed(filepath.Join(g.data, node.NodeSeedFile))
				if err != nil {
					return err
				}
				if r.Proof, err = trust.ProveIdentity(kp, prove); err != nil {
					return fmt.Errorf("--prove: %w", err)
				}
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), r)
			}
			if r.Proof != "" {
				fmt.Fprintln(cmd.OutOrStdout(), pub, r.Proof)
				return nil
			}
			fmt.Fprintln(cmd.OutOrStdout(), pub)
			if created {
				fmt.Fprintf(cmd.ErrOrStderr(), "created node key %s in %s\n", pub, g.data)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&prove, "prove", "", "hex challenge (16-64 bytes) to sign with the node key: proves this host holds it (colonize asks)")
	return cmd
}
