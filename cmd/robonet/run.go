package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/mesh"
)

// localCatalogue is the catalogue the CLI checks arguments against before
// sending; it never runs a verb (no baseline, no stores).
func localCatalogue() (*command.Catalogue, error) {
	return command.New(command.Options{ListenBaseline: []string{}})
}

// errPartial is returned (exit 2) when a command ran but not every node was ok.
var errPartial = errors.New("not every node answered ok")

func newRunCmd(g *globals) *cobra.Command {
	var (
		timeout     time.Duration
		batch       int
		limit       int
		approvalTTL time.Duration
	)
	cmd := &cobra.Command{
		Use:   "run <nodes> <verb> [args...] [-- argv...]",
		Short: "Run a command on every node a reference names, and gather every answer",
		Long: `Run a catalogue verb on nodes named by a chevron prefix (3.12), a name (rn2), all, or a selector
(caps=gpu,ai  tag=role:camera  os=linux  load<0.5  trust>=2, combined with ',' and '|').

The selector is resolved against the live registry first, so every expected node is accounted for:
ok, error, timeout, offline or denied. Arguments are name=value words or positional words
(robonet commands lists them); after -- every word is positional (exec's argv).

A dangerous verb (risk class dangerous, e.g. exec of a program not on a node's --exec-allow
list) needs a quorum of approvals: when nodes refuse it for want of one, run records an
approval in rn_approvals, prints its id on stderr and waits (up to --approval-ttl) until
other operators approve it with 'robonet approve <id>'; then it sends the command again,
with the approval, to those nodes only.

A prefix outside the swarm of the node run is connected to (robonet run 3.12 ping from a node of
3.12.7) goes federated: the local swarm's nodes are gathered as usual, and one command goes to every
other swarm under the prefix, answered by its ambassador. Each swarm ends complete, partitioned (cut
off at send time, per the federated directory: not waited for) or incomplete (no answer by the
deadline); each node ok, error, timeout, offline or denied. A selector that is exactly another swarm's
prefix (robonet run 3.12.8 status) answers as one logical node. --json adds per-swarm results.

Exit status: 0 when every node answered ok, 2 when some did not, 1 on any other error.`,
		Example: `  robonet run 3.12 ping
  robonet run 'caps=ai' scan
  robonet run 'caps=gpu,load<0.5' gauge cpu --batch 10 --timeout 5s
  robonet run rn2 exec -- systemctl is-active nginx
  robonet run all info --json`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, verb := args[0], args[1]
			words := args[2:]
			if dash := cmd.ArgsLenAtDash(); dash >= 2 {
				words = append(append(append([]string{}, args[2:dash]...), "--"), args[dash:]...)
			}
			cat, err := localCatalogue()
			if err != nil {
				return err
			}
			if _, ok := cat.Lookup(verb); !ok {
				return fmt.Errorf("unknown verb %q (robonet commands lists them)", verb)
			}
			cargs, err := cat.ArgsFromWords(verb, words)
			if err != nil {
				return err
			}
			if err := cat.Validate(verb, cargs); err != nil {
				return err
			}
			if err := checkApprovalTTL(approvalTTL); err != nil {
				return err
			}
			ctx := cmd.Context()
			c, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			req := mesh.GatherRequest{
				Selector: ref, Verb: verb, Args: cargs, Timeout: timeout, Batch: batch, Limit: limit, From: userName(),
			}
			// A prefix outside the connected node's swarm goes federated
			// (fedrun.go): other swarms answer through their ambassadors.
			if fed, err := federatedRun(ctx, cmd, g, c, req); fed || err != nil {
				return err
			}
			res, err := gatherWithProgress(ctx, c, cmd.ErrOrStderr(), g.json, req)
			if err != nil {
				return err
			}
			if res, err = approveAndResend(ctx, cmd.ErrOrStderr(), g, c, req, res, approvalTTL); err != nil {
				return err
			}
			if g.json {
				if err := printJSON(cmd.OutOrStdout(), res); err != nil {
					return err
				}
			} else {
				printGather(cmd.OutOrStdout(), res)
			}
			if !res.OK() {
				return exitError{code: 2, err: fmt.Errorf("%w: %s", errPartial, res.Summary.Line)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for answers (per batch)")
	f.IntVar(&batch, "batch", 0, "send to this many nodes at a time (0: all at once)")
	f.IntVar(&limit, "limit", 0, "at most this many nodes, in chevron order (0: no cap)")
	f.DurationVar(&approvalTTL, "approval-ttl", mesh.DefaultApprovalTTL, "how long a dangerous command's approval stays valid, and run waits for it (at most 24h)")
	return cmd
}

func userName() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "operator"
}

// gatherWithProgress runs a gather, showing a progress line on a terminal.
func gatherWithProgress(ctx context.Context, c *mesh.Client, stderr io.Writer, quiet bool, req mesh.GatherRequest) (mesh.GatherResult, error) {
	f, isFile := stderr.(*os.File)
	tty := !quiet && isFile && term.IsTerminal(int(f.Fd()))
	done := 0
	var progress func(mesh.NodeResult)
	if tty {
		progress = func(mesh.NodeResult) {
			done++
			fmt.Fprintf(stderr, "\r%s %s: %d answered…", req.Selector, req.Verb, done)
		}
	}
	res, err := c.Gather(ctx, req, progress)
	if tty {
		fmt.Fprint(stderr, "\r\033[K")
	}
	return res, err
}

func printGather(w io.Writer, res mesh.GatherResult) {
	multi := false
	for _, r := range res.Results {
		if strings.Contains(strings.TrimRight(r.Text, "\n"), "\n") {
			multi = true
		}
	}
	if multi {
		for _, r := range res.Results {
			fmt.Fprintf(w, "== %s %s: %s (%s)\n", r.Chevron, r.Name, r.Status, fmtMs(r.Ms))
			if r.Error != "" {
				fmt.Fprintf(w, "   %s\n", r.Error)
			}
			if t := strings.TrimRight(r.Text, "\n"); t != "" {
				fmt.Fprintln(w, indent(t, "   "))
			}
		}
	} else {
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CHEVRON\tNAME\tSTATUS\tMS\tRESULT")
		for _, r := range res.Results {
			detail := strings.TrimSpace(r.Text)
			if r.Error != "" {
				detail = r.Error
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Chevron, r.Name, r.Status, fmtMs(r.Ms), detail)
		}
		tw.Flush()
	}
	fmt.Fprintln(w, res.Summary.Line)
}

func fmtMs(ms float64) string {
	if ms == 0 {
		return "-"
	}
	if ms < 10 {
		return fmt.Sprintf("%.1f", ms)
	}
	return fmt.Sprintf("%.0f", ms)
}

func indent(s, pfx string) string {
	return pfx + strings.ReplaceAll(s, "\n", "\n"+pfx)
}

func newCommandsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "commands",
		Short: "List the command catalogue: verb, arguments, risk class, required tier",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cat, err := localCatalogue()
			if err != nil {
				return err
			}
			specs := cat.List()
			if g.json {
				return printJSON(cmd.OutOrStdout(), specs)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERB\tRISK\tTIER\tARGUMENTS\tSUMMARY")
			for _, s := range specs {
				var as []string
				for _, f := range s.Args.Fields {
					a := f.Name
					if !f.Required {
						a = "[" + a + "]"
					}
					as = append(as, a)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", s.Name, s.Risk, s.Tier, strings.Join(as, " "), s.Summary)
			}
			return tw.Flush()
		},
	}
}
