package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/intents"
	"github.com/robonet-mesh/robonet/mesh"
)

func newAskCmd(g *globals) *cobra.Command {
	var (
		dryRun, yes, noWait bool
		timeout             time.Duration
		planner, approval   string
		approvalTTL         time.Duration
	)
	cmd := &cobra.Command{
		Use:   `ask "<sentence>"`,
		Short: "Turn a sentence into a scatter/gather plan, show it, and run it",
		Long: `ask plans with the offline planner (no network: rules for nodes, numbers, paths and keys, and an embedded
intent classifier for the rest; README "Asking in plain language" says what it understands), or with any
OpenAI-compatible model when ROBONET_LLM_URL and ROBONET_LLM_MODEL are set (key in
ROBONET_LLM_KEY or OPENAI_API_KEY). Every plan is validated against the command catalogue before it is shown;
whether a step changes anything comes from the catalogue, never from the planner. A plan with a mutating step
runs only with --yes or after you answer yes on a terminal; without a terminal and without --yes it is refused.
When the planner finds more than one reading of the sentence and is not sure of the best, a terminal offers
them as a numbered choice; without one, ask exits 1 naming them.

A dangerous step (exec of a program not on the nodes' --exec-allow list) goes through the approval flow of
'robonet run': ask records an approval in rn_approvals, prints its id on stderr and waits (up to
--approval-ttl) until other operators approve it with 'robonet approve <id>', then sends the step again with
the approval to the nodes that refused it. With --no-wait it records the approval, says how to approve it and
stops there (the step did not run; exit 2); once approved, ask the same sentence again with --approval <id>.

The summary names every node of each step with its verdict (clean, findings, ok, exit 3, timeout, …); a step
over more than 10 nodes groups the good ones. --json adds each step's verdicts.

Exit status: 0 when every step's nodes answered ok, 2 when some did not, 1 for any other error.`,
		Example: `  robonet ask "scan AI nodes for anomalies"
  robonet ask "how much disk is left on the cameras in region 3.12" --dry-run
  robonet ask "restart nginx on web nodes with load under 0.5" --yes
  robonet ask "restart nginx on all nodes" --yes --no-wait
  robonet ask "restart nginx on all nodes" --yes --approval 3f0c9a1e5b7d42c8a6e1f0b3d9c47a25
  robonet ask "ping everything, then get cpu from the ones that answered slowly" --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch planner {
			case "auto", "rules", "llm":
			default:
				return fmt.Errorf("--planner %q: want auto, rules or llm", planner)
			}
			if err := checkApprovalTTL(approvalTTL); err != nil {
				return err
			}
			if approval != "" {
				if err := mesh.ValidApprovalID(approval); err != nil {
					return fmt.Errorf("--approval: %w", err)
				}
				if noWait {
					return fmt.Errorf("--approval %s and --no-wait: the approval exists, so there is nothing to record", approval)
				}
			}
			ctx := cmd.Context()
			c, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			members, err := c.Nodes(ctx)
			if err != nil {
				return err
			}
			cat, err := command.New(command.Options{})
			if err != nil {
				return err
			}
			out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
			plan, err := intents.PlanSentence(ctx, args[0], cat, members, planner, os.Getenv)
			if amb := (*intents.AmbiguousError)(nil); errors.As(err, &amb) {
				plan, err = pickReading(cmd.InOrStdin(), isTerminal(cmd.InOrStdin()), errw, amb, cat)
			}
			if err != nil {
				if planner == "llm" && strings.HasPrefix(err.Error(), "planner llm:") {
					return fmt.Errorf("--%s", err)
				}
				return err
			}
			tree := plan.Tree(cat)
			if g.json {
				fmt.Fprint(errw, tree)
			} else {
				fmt.Fprint(out, tree)
			}
			if dryRun {
				if g.json {
					return printJSON(out, intents.Result{Plan: plan, DryRun: true})
				}
				return nil
			}
			warnDangerous(ctx, errw, c, cat, plan)
			if mut, ids := plan.Mutating(cat); mut && !yes {
				if err := confirm(cmd.InOrStdin(), errw, ids); err != nil {
					return err
				}
			}
			flow := newApprovalFlow(errw, g, c, approvalTTL)
			flow.noWait, flow.id = noWait, approval
			flow.hint = fmt.Sprintf("; then run it with: robonet ask %s --yes --approval <id>", shellQuote(args[0]))
			opts := intents.RunOptions{Timeout: timeout, From: "robonet ask", Approve: flow.resend}
			res, err := intents.Run(ctx, c, cat, plan, opts, nil)
			if g.json {
				if perr := printJSON(out, res); perr != nil {
					return perr
				}
			} else {
				fmt.Fprintln(out)
				fmt.Fprint(out, res.Summary)
				if !strings.HasSuffix(res.Summary, "\n") {
					fmt.Fprintln(out)
				}
			}
			if err != nil {
				return err
			}
			for _, s := range res.Steps {
				if s.Status != intents.StepOK {
					return exitError{code: 2, err: fmt.Errorf("step %s: %s", s.ID, s.Status)}
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&dryRun, "dry-run", false, "show the plan only")
	f.BoolVar(&yes, "yes", false, "run a plan with mutating steps without asking")
	f.DurationVar(&timeout, "timeout", 10*time.Second, "how long each step waits for its nodes")
	f.StringVar(&planner, "planner", "auto", "auto (the LLM when configured, else rules), rules or llm")
	f.DurationVar(&approvalTTL, "approval-ttl", mesh.DefaultApprovalTTL, "how long a dangerous step's approval stays valid, and ask waits for it (at most 24h)")
	f.BoolVar(&noWait, "no-wait", false, "record a dangerous step's approval request and stop there instead of waiting for it")
	f.StringVar(&approval, "approval", "", "run a dangerous step with this approval, requested earlier (--no-wait) for the same command")
	return cmd
}

// isTerminal reports whether r is a terminal.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// warnDangerous says on errw which steps are dangerous per the catalogue
// and so need an approval, with the swarm's quorum when it can read it.
func warnDangerous(ctx context.Context, errw io.Writer, c *mesh.Client, cat *command.Catalogue, plan intents.Plan) {
	var ids []string
	for _, s := range plan.Steps {
		if r, err := cat.Risk(s.Verb, s.Args); err == nil && r == command.Dangerous {
			ids = append(ids, s.ID)
		}
	}
	if len(ids) == 0 {
		return
	}
	who := "operators"
	qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if ap, err := c.Approvals(qctx); err == nil {
		if n, err := ap.Quorum(qctx); err == nil {
			who = fmt.Sprintf("%d operator(s)", n)
		}
	}
	word := "step"
	if len(ids) > 1 {
		word = "steps"
	}
	fmt.Fprintf(errw, "%s %s needs approval by %s unless the nodes allow the program\n", word, strings.Join(ids, ", "), who)
}

// pickReading offers an ambiguous sentence's readings on a terminal and
// returns the plan of the one chosen by number; anything else is "not run".
// Without a terminal it returns amb as it is. cat, if not nil, gives each
// reading's risk.
func pickReading(in io.Reader, terminal bool, errw io.Writer, amb *intents.AmbiguousError, cat *command.Catalogue) (intents.Plan, error) {
	if !terminal || len(amb.Readings) == 0 {
		return intents.Plan{}, amb
	}
	fmt.Fprintf(errw, "%q can be read more than one way (%s):\n", amb.Sentence, amb.Reason)
	for i, r := range amb.Readings {
		risk := "read"
		if cat != nil {
			if mut, _ := r.Plan.Mutating(cat); mut {
				risk = "mutating"
				for _, s := range r.Plan.Steps {
					if k, err := cat.Risk(s.Verb, s.Args); err == nil && k == command.Dangerous {
						risk = "dangerous"
					}
				}
			}
		}
		label := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(r.Label), "("+risk+")"))
		fmt.Fprintf(errw, "  %d) %s  (%s, %.2f)\n", i+1, label, risk, r.Confidence)
	}
	fmt.Fprintf(errw, "which one? [1-%d, anything else: none] ", len(amb.Readings))
	line, _ := bufio.NewReader(in).ReadString('\n')
	n, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || n < 1 || n > len(amb.Readings) {
		return intents.Plan{}, fmt.Errorf("not run: no reading of %q chosen", amb.Sentence)
	}
	return amb.Readings[n-1].Plan, nil
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// confirm asks on a terminal; without one it refuses.
func confirm(in io.Reader, errw io.Writer, ids []string) error {
	f, ok := in.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return fmt.Errorf("the plan changes things (steps %s): pass --yes to run it without a terminal", strings.Join(ids, ", "))
	}
	fmt.Fprintf(errw, "steps %s change things. Run the plan? [y/N] ", strings.Join(ids, ", "))
	line, _ := bufio.NewReader(f).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return fmt.Errorf("not run")
}
