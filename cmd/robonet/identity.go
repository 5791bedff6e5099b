package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/robonet-mesh/robonet/node"
)

// IdentityReply is what identity prints with --json.
type IdentityReply struct {
	Pubkey  string `json:"pubkey"`
	Created bool   `json:"created"`
	Data    string `json:"data"`
}

func newIdentityCmd(g *globals) *cobra.Command {
	return &cobra.Command{
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
			if g.json {
				return printJSON(cmd.OutOrStdout(), IdentityReply{Pubkey: pub, Created: created, Data: g.data})
			}
			fmt.Fprintln(cmd.OutOrStdout(), pub)
			if created {
				fmt.Fprintf(cmd.ErrOrStderr(), "created node key %s in %s\n", pub, g.data)
			}
			return nil
		},
	}
}
