package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/intents"
)

func newAskCmd(g *globals) *cobra.Command {
	var (
		dryRun, yes bool
		timeout     time.Duration
		planner     string
	)
	cmd := &cobra.Command{
		Use:   `ask "<sentence>"`,
		Short: "Turn a sentence into a scatter/gather plan, show it, and run it",
		Long: `ask plans with the offline rule planner (no network; README "Asking in plain language" lists what it
understands), or with any OpenAI-compatible model when ROBONET_LLM_URL and ROBONET_LLM_MODEL are set (key in
ROBONET_LLM_KEY or OPENAI_API_KEY). Every plan is validated against the command catalogue before it is shown;
whether a step changes anything comes from the catalogue, never from the planner. A plan with a mutating step
runs only with --yes or after you answer yes on a terminal; without a terminal and without --yes it is refused.

Exit status: 0 when every step's nodes answered ok, 2 when some did not, 1 for any other error.`,
		Example: `  robonet ask "scan AI nodes for anomalies"
  robonet ask "how much disk is left on the cameras in region 3.12" --dry-run
  robonet ask "restart nginx on web nodes with load under 0.5" --yes
  robonet ask "ping everything, then get cpu from the ones that answered slowly" --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch planner {
			case "auto", "rules", "llm":
			default:
				return fmt.Errorf("--planner %q: want auto, rules or llm", planner)
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
			plan, err := intents.PlanSentence(ctx, args[0], cat, members, planner, os.Getenv)
			if err != nil {
				if planner == "llm" && strings.HasPrefix(err.Error(), "planner llm:") {
					return fmt.Errorf("--%s", err)
				}
				return err
			}
			out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
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
			if mut, ids := plan.Mutating(cat); mut && !yes {
				if err := confirm(cmd.InOrStdin(), errw, ids); err != nil {
					return err
				}
			}
			res, err := intents.Run(ctx, c, cat, plan, intents.RunOptions{Timeout: timeout, From: "robonet ask"}, nil)
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
	return cmd
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
