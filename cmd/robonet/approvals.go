package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/robonet-mesh/robonet/intents"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// approvalCmdTimeout bounds approvals and approve, which only read and
// write a few keys.
const approvalCmdTimeout = 30 * time.Second

// keyPair reads the CLI's nkey: the one it connects with, so the key that
// requests or approves is the one the nodes see send.
func (g *globals) keyPair() (nkeys.KeyPair, error) {
	seed := g.nkey
	if seed == "" {
		seed = filepath.Join(g.data, node.OperatorSeedFile)
	}
	return mesh.ReadSeed(seed)
}

// checkApprovalTTL checks run's --approval-ttl.
func checkApprovalTTL(ttl time.Duration) error {
	if ttl <= 0 || ttl > mesh.MaxApprovalTTL {
		return fmt.Errorf("--approval-ttl %v: want more than 0 and at most %v", ttl, mesh.MaxApprovalTTL)
	}
	return nil
}

// approveAndResend is run's approval flow (approvalFlow.resend) waiting
// for a new approval valid for ttl, with a progress line when stderr is a
// terminal.
func approveAndResend(ctx context.Context, stderr io.Writer, g *globals, c *mesh.Client, req mesh.GatherRequest, res mesh.GatherResult, ttl time.Duration) (mesh.GatherResult, error) {
	return newApprovalFlow(stderr, g, c, ttl).resend(ctx, req, res)
}

// approvalFlow is the approval flow of run and ask.
type approvalFlow struct {
	stderr io.Writer
	tty    bool // stderr is a terminal: show a progress line while waiting
	g      *globals
	c      *mesh.Client
	ttl    time.Duration
	// noWait: record the approval request, say how to approve it, and
	// return an error wrapping intents.ErrApprovalPending instead of
	// waiting; hint follows "approve with: robonet approve <id>" in it.
	noWait bool
	hint   string
	// id: use this approval, requested earlier by the same key for the
	// same verb and arguments, instead of requesting one.
	id string
}

func newApprovalFlow(stderr io.Writer, g *globals, c *mesh.Client, ttl time.Duration) approvalFlow {
	f, ok := stderr.(*os.File)
	return approvalFlow{stderr: stderr, tty: ok && term.IsTerminal(int(f.Fd())), g: g, c: c, ttl: ttl}
}

// resend: when some nodes denied req for want of an approval (res holds
// their answers), it requests one in rn_approvals for req's verb and
// arguments, with the swarm's quorum, valid for ttl (or takes f.id); tells
// on stderr how to approve it; waits until it is satisfied; then sends req
// again, with the approval, to those nodes only, and returns res with their
// new answers. When the approval expires first, it says so on stderr and
// returns res with those nodes still denied. Without such nodes it returns
// res as it is.
func (f approvalFlow) resend(ctx context.Context, req mesh.GatherRequest, res mesh.GatherResult) (mesh.GatherResult, error) {
	stderr := f.stderr
	waiting := mesh.ApprovalRequired(res)
	if len(waiting) == 0 {
		return res, nil
	}
	kp, err := f.g.keyPair()
	if err != nil {
		return res, err
	}
	ap, err := f.c.Approvals(ctx)
	if err != nil {
		return res, err
	}
	var a trust.Approval
	if f.id != "" {
		if a, err = f.existing(ctx, ap, kp, req); err != nil {
			return res, err
		}
	} else {
		m, err := ap.Quorum(ctx)
		if err != nil {
			return res, err
		}
		a, err = ap.Request(ctx, kp, req.Verb, req.Args, m, f.ttl, time.Now(), mesh.WithSelector(req.Selector), mesh.WithFrom(req.From))
		if err != nil {
			return res, err
		}
		fmt.Fprintf(stderr, "approval %s: %s needs %d approval(s); approve with: robonet approve %s\n", a.ID, a.Verb, a.Need, a.ID)
		if f.noWait {
			return res, fmt.Errorf("%w: %s did not run on %d node(s); approve with: robonet approve %s%s",
				intents.ErrApprovalPending, a.Verb, len(waiting), a.ID, strings.ReplaceAll(f.hint, "<id>", a.ID))
		}
	}
	got, err := f.wait(ctx, ap, a)
	if errors.Is(err, trust.ErrApprovalExpired) {
		fmt.Fprintf(stderr, "approval %s expired with %d of %d approvals: %s did not run on %d node(s)\n", a.ID, got.Count(), a.Need, a.Verb, len(waiting))
		out := res
		out.Results = append([]mesh.NodeResult(nil), res.Results...)
		for i, r := range out.Results {
			if r.Status == mesh.StatusDenied && r.Code == wire.CodeApprovalRequired {
				out.Results[i].Error = strings.TrimSpace(r.Error + " (approval " + a.ID + " expired)")
			}
		}
		return out, nil
	}
	if err != nil {
		return res, err
	}
	// What was approved must be what was asked: a record rewritten in the
	// bucket would be refused by the nodes anyway.
	if got.Verb != a.Verb || got.ArgsDigest != a.ArgsDigest || got.Requester != a.Requester || got.Need != a.Need || !got.Expires.Equal(a.Expires) {
		return res, fmt.Errorf("approval %s: the record in %s no longer matches the request", a.ID, mesh.ApprovalBucket)
	}
	fmt.Fprintf(stderr, "approval %s: %d of %d approvals; sending %s to %d node(s)\n", a.ID, got.Count(), a.Need, a.Verb, len(waiting))
	return f.c.GatherApproved(ctx, req, res, a.ID, nil)
}

// existing reads approval f.id and checks that it is kp's request for
// req's verb and arguments.
func (f approvalFlow) existing(ctx context.Context, ap *mesh.Approvals, kp nkeys.KeyPair, req mesh.GatherRequest) (trust.Approval, error) {
	a, _, err := ap.Get(ctx, f.id)
	if err != nil {
		return a, fmt.Errorf("--approval %s: %w", f.id, err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return a, err
	}
	canon, err := mesh.ApprovalArgs(req.Args)
	if err != nil {
		return a, err
	}
	if a.Verb != req.Verb || a.ArgsDigest != trust.DigestArgs(canon) {
		return a, fmt.Errorf("--approval %s is for another command than %s %s", f.id, req.Verb, clipDisplay(string(canon), 80))
	}
	if a.Requester != pub {
		return a, fmt.Errorf("--approval %s was requested by another key (%s)", f.id, shortPub(a.Requester))
	}
	fmt.Fprintf(f.stderr, "approval %s: %s needs %d approval(s); approve with: robonet approve %s\n", a.ID, a.Verb, a.Need, a.ID)
	return a, nil
}

// wait waits for approval a; on a terminal it rewrites a progress line
// about once a second meanwhile.
func (f approvalFlow) wait(ctx context.Context, ap *mesh.Approvals, a trust.Approval) (trust.Approval, error) {
	if !f.tty {
		return ap.Wait(ctx, a.ID)
	}
	pctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		count := 0
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			fmt.Fprintf(f.stderr, "\r%s\033[K", approvalProgressLine(a, count, time.Now()))
			select {
			case <-pctx.Done():
				return
			case <-tick.C:
			}
			rctx, cancel := context.WithTimeout(pctx, time.Second)
			if r, _, err := ap.Record(rctx, a.ID); err == nil {
				count = r.Count()
			}
			cancel()
		}
	}()
	got, err := ap.Wait(ctx, a.ID)
	stop()
	<-done
	fmt.Fprint(f.stderr, "\r\033[K")
	return got, err
}

// approvalProgressLine is "waiting for approval <id>: 0 of 1 approvals,
// 4m51s left (robonet approve <id>)".
func approvalProgressLine(a trust.Approval, count int, now time.Time) string {
	left := max(a.Expires.Sub(now).Truncate(time.Second), 0)
	return fmt.Sprintf("waiting for approval %s: %d of %d approvals, %s left (robonet approve %s)", a.ID, count, a.Need, left, a.ID)
}

func newApprovalsCmd(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "approvals",
		Short: "List pending approvals of dangerous commands (rn_approvals)",
		Long: `List the approvals that dangerous commands wait for, newest first: id, verb and arguments,
who asked, how many approvals it has of how many it needs, and when it expires.
Approve one with 'robonet approve <id>'. Expired ones are left out unless --all.

ARGS, REQUESTED BY and ON are for reading: approvers sign the verb and a digest of the
arguments (checked against ARGS), the requester's key, the count needed and the expiry.
An approval does not limit which nodes the requester sends the command to.`,
		Example: `  robonet approvals
  robonet approvals --all --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), approvalCmdTimeout)
			defer cancel()
			c, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			now := time.Now()
			views, skipped, err := c.ApprovalViews(ctx, all, now)
			for _, e := range skipped {
				fmt.Fprintf(cmd.ErrOrStderr(), "robonet: skipped: %s\n", oneLine(e))
			}
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), views)
			}
			if len(views) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no pending approvals")
				return nil
			}
			printApprovals(cmd.OutOrStdout(), views, now)
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "include expired approvals")
	return cmd
}

func printApprovals(w io.Writer, views []mesh.ApprovalView, now time.Time) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tVERB\tARGS\tON\tREQUESTED BY\tAPPROVALS\tEXPIRES")
	for _, v := range views {
		args := "-"
		if len(v.Args) > 0 {
			args = string(v.Args)
		}
		by := shortPub(v.Requester)
		if v.From != "" {
			by = v.From + " " + by
		}
		on := v.Selector
		if on == "" {
			on = "-"
		}
		state := ""
		if v.Satisfied {
			state = " ok"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d%s\t%s\n", v.ID, v.Verb, clipDisplay(args, 48), clipDisplay(on, 24), by,
			v.Count, v.Need, state, untilText(v.Expires, now))
	}
	tw.Flush()
}

// untilText says when t is relative to now: "in 9m12s" or "expired 3m ago".
func untilText(t, now time.Time) string {
	d := t.Sub(now).Truncate(time.Second)
	if d <= 0 {
		return "expired " + (-d).String() + " ago"
	}
	return "in " + d.String()
}

func shortPub(pub string) string {
	if len(pub) > 10 {
		return "(" + pub[:10] + "…)"
	}
	return "(" + pub + ")"
}

// clipDisplay cuts s to n runes for a table cell.
func clipDisplay(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func newApproveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "approve <id>",
		Short: "Approve a dangerous command's pending approval with your key",
		Long: `Sign approval <id> (robonet approvals lists them) with your nkey (--nkey, or the local
operator key in --data) and record the signature in rn_approvals. The command runs once
as many distinct operators or admins as the swarm's quorum (rn_config trust.quorum,
default 1) have approved it, before it expires.

Refused with exit 1: an unknown or malformed id, an expired approval, and your own
request (the requester cannot approve it). Approving again with the same key changes
nothing, as one key counts once: approve says so on stderr and exits 0.`,
		Example: `  robonet approve 3f0c9a1e5b7d42c8a6e1f0b3d9c47a25
  robonet approve 3f0c9a1e5b7d42c8a6e1f0b3d9c47a25 --nkey ~/.robonet/alice.nk --json`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("approve takes one argument, the approval id (got %d; robonet approvals lists them)", len(args))
			}
			return mesh.ValidApprovalID(args[0])
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			kp, err := g.keyPair()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), approvalCmdTimeout)
			defer cancel()
			c, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			ap, err := c.Approvals(ctx)
			if err != nil {
				return err
			}
			a, err := ap.Approve(ctx, kp, id, time.Now())
			already := errors.Is(err, mesh.ErrAlreadyApproved)
			if err != nil && !already {
				return err
			}
			if already {
				fmt.Fprintf(cmd.ErrOrStderr(), "robonet: %s\n", oneLine(err))
			}
			v := mesh.ViewApproval(mesh.ApprovalRecord{Approval: a}, time.Now())
			v.AlreadyApproved = already
			if g.json {
				return printJSON(cmd.OutOrStdout(), v)
			}
			state := "satisfied"
			if !v.Satisfied {
				state = fmt.Sprintf("needs %d more", v.Need-v.Count)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d of %d approvals; %s\n", id, v.Count, v.Need, state)
			return nil
		},
	}
}
