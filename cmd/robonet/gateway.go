package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/robonet-mesh/robonet/gateway"
	"github.com/robonet-mesh/robonet/subjects"
)

func newGatewayCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "The node's HTTP gateway (dashboard, REST, live WebSocket): login links and bearer tokens",
		Long: `robonet up runs a gateway on 127.0.0.1:8340 by default (--gateway ADDR | off). Nothing in it is open
without a credential from here: 'gateway login' prints a one-time link for a browser, 'gateway token
create' a bearer token for programs. Both act as your key with your role (or a lower one you ask for):
the nodes judge what the browser or the program does exactly as they judge this CLI. The link or the
token alone goes to standard output, the rest to standard error.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newGatewayLoginCmd(g), newGatewayTokenCmd(g))
	return cmd
}

func newGatewayLoginCmd(g *globals) *cobra.Command {
	var (
		role string
		ttl  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Print a one-time login URL for the gateway of the node the CLI connects to (short-lived, single use)",
		Long: `Print a login URL for the dashboard: it works once, within 60 s, and becomes a browser session
(an HttpOnly, SameSite=Strict cookie) acting as your key with --role (default: your own) until --ttl
passes or 12 h go by without use.`,
		Example: `  robonet gateway login
  xdg-open "$(robonet gateway login --role observer)"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cred, err := requestCredential(cmd.Context(), g, gateway.CredentialRequest{Kind: gateway.KindLogin, Role: role, TTL: ttl})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "robonet: login link as %s, single use, valid until %s; the session lasts at most %s\n",
				cred.Role, cred.Expires.Local().Format(time.TimeOnly), ttlText(ttl))
			fmt.Fprintln(cmd.OutOrStdout(), cred.URL)
			return nil
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "admin, operator or observer, at most your own (default: your own)")
	cmd.Flags().DurationVar(&ttl, "ttl", gateway.DefaultTTL, "how long the browser session may last (at most 168h)")
	return cmd
}

func newGatewayTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Bearer tokens for the gateway's REST API, WHEP and /metrics",
		Args:  cobra.NoArgs,
	}
	var (
		role string
		ttl  time.Duration
	)
	create := &cobra.Command{
		Use:   "create",
		Short: "Print a bearer token (rngw_…) for the gateway of the node the CLI connects to",
		Long: `Print a bearer token for programs: send it as 'Authorization: Bearer <token>'. It acts as your key
with --role (default: your own; never above the role you have when it is used) until --ttl passes. The
gateway keeps no copy: it checks your signature on every use, so the token survives a restart of the
node, and removing or revoking your key ends it. Keep it like a password.`,
		Example: `  T=$(robonet gateway token create --role observer --ttl 24h)
  curl -H "Authorization: Bearer $T" http://127.0.0.1:8340/api/nodes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cred, err := requestCredential(cmd.Context(), g, gateway.CredentialRequest{Kind: gateway.KindToken, Role: role, TTL: ttl})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "robonet: bearer token as %s, valid until %s\n", cred.Role, cred.Expires.Local().Format(time.RFC3339))
			fmt.Fprintln(cmd.OutOrStdout(), cred.Token)
			return nil
		},
	}
	create.Flags().StringVar(&role, "role", "", "admin, operator or observer, at most your own (default: your own)")
	create.Flags().DurationVar(&ttl, "ttl", gateway.DefaultTTL, "how long the token is valid (at most 720h)")
	cmd.AddCommand(create)
	return cmd
}

func ttlText(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return d.String()
}

// requestCredential asks the gateway of the node the CLI connects to for a
// login link or a token, signing the delegation with the CLI's key.
func requestCredential(ctx context.Context, g *globals, req gateway.CredentialRequest) (gateway.Credential, error) {
	switch req.Role {
	case "", "admin", "operator", "observer":
	default:
		return gateway.Credential{}, fmt.Errorf("--role %q: want admin, operator or observer", req.Role)
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	c, err := g.connect(ctx)
	if err != nil {
		return gateway.Credential{}, err
	}
	defer c.Close()
	st, err := c.Status(ctx)
	if err != nil {
		return gateway.Credential{}, err
	}
	chev, err := subjects.Parse(st.Chevron)
	if err != nil {
		return gateway.Credential{}, fmt.Errorf("the node's chevron %q: %w", st.Chevron, err)
	}
	return gateway.RequestCredential(ctx, gateway.Requester{Conn: c.Conn(), Signer: c.Signer(), KeyPair: c.KeyPair(),
		NodeKey: c.NodeKey(), Chevron: chev}, req)
}
