// Command robonet is the robonet CLI and daemon: `robonet up` runs a node;
// every other command is a client of a node. It parses flags, calls the
// packages and prints: tables for people, --json for programs, diagnostics
// on stderr. The work lives in the packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot(os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "robonet: "+oneLine(err))
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}

// globals are the flags every client command shares.
type globals struct {
	config string
	server string
	data   string
	nkey   string
	json   bool
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "robonet",
		Short: "robonet: a NATS-backed automation fabric",
		Long: `robonet runs one node per machine ('robonet up'); nodes form a swarm over NATS routes.
Every other command talks to a node: --server (default nats://127.0.0.1:4222) with the
credentials in the local data dir (--data) or --nkey FILE.

Every flag can also come from the environment (ROBONET_<FLAG>, e.g. ROBONET_CHEVRON=3.12.7.1)
or from a config file (--config FILE: lines of 'flag = value', or a JSON object such as
{"chevron": "3.12.7.1", "join": ["10.0.0.2:6222"], "token_file": "/etc/robonet/join.token"});
flags win over the environment, which wins over the file.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyLayers(cmd, os.LookupEnv)
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.config, "config", "", "config file: lines of 'flag = value' (# comments), or a JSON object (see README)")
	pf.StringVar(&g.data, "data", defaultDataDir(), "data directory (node state; the CLI finds credentials here)")
	pf.StringVar(&g.server, "server", "nats://127.0.0.1:4222", "NATS URL of a node (client commands)")
	pf.StringVar(&g.nkey, "nkey", "", "nkey seed file to authenticate with (default: <data>/operator.nk)")
	pf.BoolVar(&g.json, "json", false, "print machine-readable JSON")
	root.AddCommand(
		newUpCmd(g),
		newNodesCmd(g),
		newCoreCmd(g),
		newFederationCmd(g),
		newStatusCmd(g),
		newNatsContextCmd(g),
		newVersionCmd(g),
		newStopCmd(g),
		newRunCmd(g),
		newCommandsCmd(g),
		newDoCmd(g),
		newMacroCmd(g),
		newApprovalsCmd(g),
		newApproveCmd(g),
		newTokenCmd(g),
		newUserCmd(g),
		newTrustCmd(g),
		newRevokeCmd(g),
		newAskCmd(g),
		newAlertsCmd(g),
		newGatewayCmd(g),
		newIdentityCmd(g),
		newColonizeCmd(g),
		newUncolonizeCmd(g),
		newTopCmd(g),
		newProxyCmd(g),
		newMediaCmd(g),
	)
	return root
}
