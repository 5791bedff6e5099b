package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/spf13/cobra"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// createFedToken is token create --federate.
func createFedToken(cmd *cobra.Command, g *globals, ttl time.Duration, prefix, forKey string) error {
	if forKey != "" {
		return fmt.Errorf("--for binds a join token to a node key; a federation token is bound to a swarm prefix (--prefix)")
	}
	if prefix != "" {
		p, err := subjects.Parse(prefix)
		if err != nil || p.Len() != 3 {
			return fmt.Errorf("--prefix %q: want a swarm prefix zone.region.swarm, e.g. 3.12.7", prefix)
		}
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
	defer cancel()
	c, err := g.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	var tr node.TokenReply
	if err := c.Query(ctx, subjects.QueryToken, node.TokenRequest{TTLMs: ttl.Milliseconds(), Federate: true, Prefix: prefix}, &tr); err != nil {
		return permissionHint(err, "token create --federate needs an admin's credentials")
	}
	// A node that predates federation issues a join token instead: never
	// print that as a federation token.
	claims, err := trust.InspectFedToken(tr.Token)
	if err != nil || claims.Bound.String() != prefix {
		return fmt.Errorf("the node did not issue a federation token for %q (an older robonet?): not printed", prefix)
	}
	if g.json {
		return printJSON(cmd.OutOrStdout(), tr)
	}
	fmt.Fprintln(cmd.OutOrStdout(), tr.Token)
	who := "the first child swarm that uses it"
	if prefix != "" {
		who = "child swarm " + prefix
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "federation token %s of hub swarm %s for %s, first use before %s:\n"+
		"  on each node of that swarm: robonet up --chevron <prefix>.<n> --federate <hub nodes' leaf addresses> --federate-token-file <file holding it>\n",
		tr.ID, claims.Hub, who, tr.Expires.Local().Format(time.DateTime))
	return nil
}

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Swarm secrets and one-time join tokens",
		Long: `A swarm admits a node that proves it knows the swarm secret, or that shows a one-time join token.

  robonet token generate            a fresh random secret (offline): start every founding node with --token <secret>
  robonet token create --ttl 15m    a one-time token from a running swarm: robonet up --join ADDR --token <token>
  robonet token create --for KEY    one only the node with key KEY can use (robonet identity on that host prints KEY)
  robonet token create --federate [--prefix 3.12.7]
                                    on a hub swarm (--leaf-listen): a token admitting one child swarm

The secret is kept in each node's data dir (swarm.secret, mode 0600); it never crosses the network:
nodes prove it with an HMAC bound to their key inside their route certificate.`,
	}
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Print a fresh random swarm secret (offline)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := trust.GenerateSecret()
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), map[string]string{"secret": s})
			}
			fmt.Fprintln(cmd.OutOrStdout(), s)
			return nil
		},
	}
	var (
		ttl       time.Duration
		forKey    string
		federate  bool
		fedPrefix string
	)
	create := &cobra.Command{
		Use:   "create",
		Short: "Issue a one-time join token for one new node, or with --federate a token for a child swarm (admin)",
		Long: `Without --federate: a one-time join token for one new node of this swarm.

With --federate (on a hub swarm, whose nodes run with --leaf-listen): a federation token that admits one
child swarm. Its first use, before --ttl runs out, binds it to the child's prefix (or --prefix binds it
from the start); the nodes of that swarm then reconnect with it for as long as the hub keeps the swarm.
The child's nodes start with --federate <the hub nodes' leaf addresses> --federate-token <token>.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl < node.MinTokenTTL || ttl > node.MaxTokenTTL {
				return fmt.Errorf("--ttl %v: want %v to %v", ttl, node.MinTokenTTL, node.MaxTokenTTL)
			}
			if federate {
				return createFedToken(cmd, g, ttl, fedPrefix, forKey)
			}
			if fedPrefix != "" {
				return fmt.Errorf("--prefix binds a federation token: it needs --federate")
			}
			if forKey != "" && !nkeys.IsValidPublicUserKey(forKey) {
				return fmt.Errorf("--for %q: not a node key (robonet identity prints one: U…)", forKey)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			c, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			var tr node.TokenReply
			if err := c.Query(ctx, subjects.QueryToken, node.TokenRequest{TTLMs: ttl.Milliseconds(), Pubkey: forKey}, &tr); err != nil {
				return permissionHint(err, "token create needs an admin's credentials")
			}
			// A node that predates bound tokens ignores the key it was
			// given: never hand out an unbound token in place of a bound one.
			if claims, err := trust.InspectToken(tr.Token); err != nil || claims.BoundTo != forKey {
				return fmt.Errorf("the node issued a token bound to %q, not to %q (an older robonet?): not printed", claims.BoundTo, forKey)
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), tr)
			}
			fmt.Fprintln(cmd.OutOrStdout(), tr.Token)
			bound := ""
			if forKey != "" {
				bound = ", only for node key " + forKey
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "one-time token %s, valid until %s%s: robonet up --join <addr> --token-file <file holding it>\n",
				tr.ID, tr.Expires.Local().Format(time.DateTime), bound)
			return nil
		},
	}
	create.Flags().DurationVar(&ttl, "ttl", 15*time.Minute, "how long the token stays valid")
	create.Flags().StringVar(&forKey, "for", "", "bind the token to this node key (robonet identity on the new host prints it): no other key can join with it")
	create.Flags().BoolVar(&federate, "federate", false, "a federation token for a child swarm (on a hub swarm: --leaf-listen)")
	create.Flags().StringVar(&fedPrefix, "prefix", "", "with --federate: bind the token to this child swarm prefix, zone.region.swarm (default: the first swarm that uses it)")
	var rotateWait time.Duration
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Replace the swarm secret on every member (admin); the old one admits nobody new",
		Long: `Makes a new secret in this process, seals it to each registered member's curve key (nkeys xkey) and writes
it to rn_secrets signed with your admin key; each member checks the signature and installs it. Members that are down
take it when they are back (they still rejoin meanwhile: members are admitted by key). Waits --wait for every live
member to report the new secret in its heartbeat; exits 2 when a live one did not.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), rotateWait+30*time.Second)
			defer cancel()
			c, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			ids, err := c.Identities(ctx)
			if err != nil {
				return permissionHint(err, "token rotate needs an admin's credentials")
			}
			rot, err := ids.RotateSecret(ctx, time.Now())
			if err != nil {
				return permissionHint(err, "token rotate needs an admin's credentials")
			}
			rr := waitRotation(ctx, c, rot, rotateWait)
			if g.json {
				if err := printJSON(cmd.OutOrStdout(), rr); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "swarm secret rotated on %d members: %s\n", len(rr.Rotated), strings.Join(rr.Rotated, ", "))
				for _, p := range rr.Pending {
					fmt.Fprintln(cmd.ErrOrStderr(), "pending (takes it when back):", p)
				}
				for _, f := range rr.Failed {
					fmt.Fprintln(cmd.ErrOrStderr(), "not rotated:", f)
				}
			}
			if len(rr.Failed) > 0 {
				return exitError{code: 2, err: fmt.Errorf("%d live members did not take the new secret", len(rr.Failed))}
			}
			return nil
		},
	}
	rotate.Flags().DurationVar(&rotateWait, "wait", 15*time.Second, "how long to wait for live members to take the new secret")
	cmd.AddCommand(gen, create, rotate)
	return cmd
}

// permissionHint explains a request the NATS permissions refused (nats.go
// then sees only a timeout or no responders).
func permissionHint(err error, hint string) error {
	if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "timeout") || strings.Contains(err.Error(), "no responders") {
		return fmt.Errorf("%w (%s)", err, hint)
	}
	return err
}

func newUserCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Add, list and remove the people and programs that may connect (admin)",
	}
	var role, out string
	add := &cobra.Command{
		Use:   "add <name>",
		Short: "Add a user with a fresh nkey; prints its seed, or writes it to --out",
		Long: `Roles: admin (everything), operator (commands of every tier, macros, approvals),
observer (subscribe to rn.>, publish only read-only commands and queries).
Every node reloads its authorization at once. The seed is the user's credential:
give it to them over a channel you trust; robonet keeps only the public key.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			c, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			ids, err := c.Identities(ctx)
			if err != nil {
				return err
			}
			pub, seed, err := mesh.NewUserKey()
			if err != nil {
				return err
			}
			u, err := ids.AddUser(ctx, args[0], role, pub, signerKey(c), time.Now())
			var pending *mesh.NotEverywhereError
			if err != nil && !errors.As(err, &pending) {
				return permissionHint(err, "user add needs an admin's credentials")
			}
			if out != "" {
				if err := writeSeed(out, seed); err != nil {
					return err
				}
			}
			if g.json {
				v := map[string]any{"user": u}
				if out == "" {
					v["seed"] = string(seed)
				} else {
					v["seed_file"] = out
				}
				return printJSON(cmd.OutOrStdout(), v)
			}
			if out == "" {
				fmt.Fprintln(cmd.OutOrStdout(), string(seed))
				fmt.Fprintf(cmd.ErrOrStderr(), "user %s (%s) added, key %s; the line above is its seed: keep it secret (robonet --nkey FILE)\n", u.Name, u.Role, u.Nkey)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "user %s (%s) added, key %s; seed in %s\n", u.Name, u.Role, u.Nkey, out)
			}
			if pending != nil {
				return exitError{code: 2, err: pending}
			}
			return nil
		},
	}
	add.Flags().StringVar(&role, "role", wire.RoleObserver, "admin, operator or observer")
	add.Flags().StringVar(&out, "out", "", "write the seed to this file (mode 0600) instead of stdout")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the users",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			c, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			ids, err := c.Identities(ctx)
			if err != nil {
				return err
			}
			users, err := ids.Users(ctx)
			if err != nil {
				return err
			}
			if g.json {
				if users == nil {
					users = []wire.User{}
				}
				return printJSON(cmd.OutOrStdout(), users)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE\tKEY\tADDED")
			for _, u := range users {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Name, u.Role, u.Nkey, u.Added.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	remove := &cobra.Command{
		Use:   "remove <name>",
		Short: "Remove a user: its key is revoked and its connections are closed at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			c, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			ids, err := c.Identities(ctx)
			if err != nil {
				return err
			}
			u, err := ids.RemoveUser(ctx, args[0], signerKey(c), time.Now())
			if err != nil {
				return permissionHint(err, "user remove needs an admin's credentials")
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), map[string]any{"removed": u})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "user %s removed; key %s revoked\n", u.Name, u.Nkey)
			return nil
		},
	}
	cmd.AddCommand(add, list, remove)
	return cmd
}

func signerKey(c *mesh.Client) string {
	if s := c.Signer(); s != nil {
		return s.PublicKey()
	}
	return ""
}

func writeSeed(path string, seed []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if _, err := f.Write(append(seed, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func newTrustCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trust",
		Short: "HCTH trust as the connected node sees it: per key score, tier, chain, gaps, breaks, state",
		Long: `Every node keeps a ledger of each key it hears from (nodes' heartbeats and events, users' commands):
chain length, first seen, gaps, replays, anomalies and breaks. The score in [0,1] grows with an
unbroken chain and with time; tiers start at the scores shown under the table. A break (a fork,
a bad signature where only the key's owner may publish) quarantines the key and the swarm leader
revokes it. Users act at their role's tier (admin 3, operator 2, observer 1); nodes at their score's.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			c, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			var r node.TrustReport
			if err := c.Query(ctx, subjects.QueryTrust, nil, &r); err != nil {
				return err
			}
			if g.json {
				if r.Peers == nil {
					r.Peers = []node.TrustPeer{}
				}
				return printJSON(cmd.OutOrStdout(), r)
			}
			w := cmd.OutOrStdout()
			tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PEER\tROLE\tSCORE\tTIER\tCHAIN\tFIRST SEEN\tGAPS\tREPLAYS\tBREAKS\tSTATE")
			for _, p := range r.Peers {
				who := p.Name
				if p.Chevron != "" {
					who = p.Name + " (" + p.Chevron + ")"
				}
				if who == "" {
					who = p.Key[:12] + "…"
				}
				role := p.Role
				if role == "" {
					role = "-"
				}
				state := string(p.State)
				if p.Reason != "" {
					state += ": " + p.Reason
				}
				first := "-"
				if !p.FirstSeen.IsZero() {
					first = p.FirstSeen.Local().Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%s\t%.3f\t%d\t%d\t%s\t%d\t%d\t%d\t%s\n", who, role, p.Score, p.Tier, p.Length, first, p.Gaps, p.Replays, p.Breaks, state)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			ct := r.Counters
			fmt.Fprintf(w, "\nseen by %s (%s); tiers start at %.2f / %.2f / %.2f\n", r.Name, r.Chevron, r.Tiers[0], r.Tiers[1], r.Tiers[2])
			fmt.Fprintf(w, "refused: %d unsigned, %d bad headers, %d bad signatures, %d unknown keys, %d denied; %d replays dropped; %d breaks\n",
				ct.Unsigned, ct.BadHeaders, ct.BadSig, ct.UnknownKey, ct.Denied, ct.Replays, ct.Breaks)
			return nil
		},
	}
	var reason string
	action := func(use, short, query string) *cobra.Command {
		return &cobra.Command{
			Use:   use + " <node|key>",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
				defer cancel()
				c, err := g.connect(ctx)
				if err != nil {
					return err
				}
				defer c.Close()
				members, err := c.Nodes(ctx)
				if err != nil {
					return err
				}
				key, label, err := resolveKey(args[0], members)
				if err != nil {
					return err
				}
				live := liveCount(members)
				results, err := askEvery[node.TrustActionResult](ctx, c, query, node.TrustAction{Key: key, Reason: reason}, members)
				if err != nil {
					return permissionHint(err, use+" needs an operator's credentials")
				}
				if g.json {
					return printJSON(cmd.OutOrStdout(), map[string]any{"key": key, "results": results})
				}
				ok, self := 0, 0
				for _, r := range results {
					switch {
					case r.Self:
						self++
					case r.OK:
						ok++
					default:
						fmt.Fprintf(cmd.ErrOrStderr(), "%s (%s): %s\n", r.Name, r.Chevron, r.Error)
					}
				}
				others := live - self
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s on %d of %d live nodes (a node does not judge its own key)\n", label, use+"d", ok, others)
				if ok < others {
					return exitError{code: 2, err: fmt.Errorf("%d of %d nodes did not %s %s", others-ok, others, use, label)}
				}
				return nil
			},
		}
	}
	q := action("quarantine", "Quarantine a peer on every node: trust 0, its messages refused", subjects.QueryQuarantine)
	q.Flags().StringVar(&reason, "reason", "", "why (recorded in every ledger and the trust event)")
	r := action("release", "Release a quarantined peer on every node: it starts again at trust 0", subjects.QueryRelease)
	cmd.AddCommand(q, r)
	return cmd
}

// resolveKey turns a node reference (name or chevron) or a public key into
// the key.
func resolveKey(ref string, members []wire.Member) (key, label string, err error) {
	if nkeys.IsValidPublicUserKey(ref) || nkeys.IsValidPublicServerKey(ref) {
		return ref, ref[:12] + "…", nil
	}
	for _, m := range members {
		if m.Name == ref || m.Chevron == ref {
			if m.Pubkey == "" {
				return "", "", fmt.Errorf("node %s: the registry has no key for it", ref)
			}
			return m.Pubkey, m.Name + " (" + m.Chevron + ")", nil
		}
	}
	return "", "", fmt.Errorf("%q is neither a node (name or chevron) nor a public key", ref)
}

func newRevokeCmd(g *globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "revoke <node|key>",
		Short: "Remove a node or key from the swarm for good: every node refuses it and cuts it off at once (admin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			c, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			members, err := c.Nodes(ctx)
			if err != nil {
				return err
			}
			ids, err := c.Identities(ctx)
			if err != nil {
				return err
			}
			why := reason
			if why == "" {
				why = "revoked by an admin"
			}
			var m *wire.Member
			for i := range members {
				if members[i].Name == args[0] || members[i].Chevron == args[0] || members[i].Pubkey == args[0] {
					m = &members[i]
				}
			}
			switch {
			case m != nil:
				err = ids.RemoveNode(ctx, *m, why, signerKey(c), time.Now())
			case nkeys.IsValidPublicUserKey(args[0]) || nkeys.IsValidPublicServerKey(args[0]):
				err = ids.Revoke(ctx, args[0], "", why, signerKey(c), time.Now())
			default:
				return fmt.Errorf("%q is neither a node (name or chevron) nor a public key", args[0])
			}
			if err != nil {
				return permissionHint(err, "revoke needs an admin's credentials")
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), map[string]string{"revoked": args[0], "reason": why})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s revoked: %s\n", args[0], why)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in rn_revoked)")
	return cmd
}

// RotateReply is what token rotate prints with --json.
type RotateReply struct {
	Epoch   int64    `json:"epoch"`
	Rotated []string `json:"rotated"`           // members that hold the new secret
	Pending []string `json:"pending,omitempty"` // "name: why" for members down now: they take it when back
	Failed  []string `json:"failed,omitempty"`  // "name: why" for live members that did not take it in time
}

// waitRotation watches the members' heartbeats (through the member list)
// until every live member holds rot's epoch or wait passed.
func waitRotation(ctx context.Context, c *mesh.Client, rot mesh.Rotation, wait time.Duration) RotateReply {
	rr := RotateReply{Epoch: rot.Epoch}
	for chev, why := range rot.Skipped {
		rr.Failed = append(rr.Failed, fmt.Sprintf("%s: %s", chev, why))
	}
	deadline := time.Now().Add(wait)
	var members map[string]wire.Member
	for {
		ms, err := c.Nodes(ctx)
		if err == nil {
			members = map[string]wire.Member{}
			for _, m := range ms {
				members[m.Pubkey] = m
			}
			done := true
			for _, in := range rot.Members {
				m, ok := members[in.Pubkey]
				if ok && m.State != wire.StateOffline && m.SecretEpoch < rot.Epoch {
					done = false
				}
			}
			if done {
				break
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	for _, in := range rot.Members {
		m, ok := members[in.Pubkey]
		switch {
		case ok && m.SecretEpoch >= rot.Epoch:
			rr.Rotated = append(rr.Rotated, in.Name)
		case !ok || m.State == wire.StateOffline:
			rr.Pending = append(rr.Pending, in.Name+": offline")
		default:
			rr.Failed = append(rr.Failed, fmt.Sprintf("%s: still on epoch %d after %v", in.Name, m.SecretEpoch, wait))
		}
	}
	sort.Strings(rr.Failed)
	return rr
}
