package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/robonet-mesh/robonet/mesh"
)

const composeHelp = `A composition chains steps (nodes:verb args):
  a -> b      the structured output (JSON) of a is the input of b (exec gets it on stdin)
  a | cmd     the text of a, one line per node line ("chevron name: line"), goes to the
              stdin of cmd, a program run here (argv, no shell)
  [a, b]      runs a and b concurrently and gathers both
  @name       runs the macro name (robonet macro set)
Quote words holding spaces or the operators | , [ ] -> with ' or ".

Every step's table is printed under a header line naming it, a local program's output as
it printed it. Everything is checked (verbs, arguments, selectors, local programs, macros
and their cycles) before anything runs.

Exit status: 0 when every step was ok, 2 when some node or local program was not,
1 on any other error.`

func newDoCmd(g *globals) *cobra.Command {
	var sf stepFlags
	cmd := &cobra.Command{
		Use:   "do '<composition>'",
		Short: "Run a composition of steps: a -> b (JSON), a | cmd (text to a local program), [a, b] (fork), @macro",
		Long:  "Run a composition of commands on the swarm.\n\n" + composeHelp,
		Example: `  robonet do 'rn1:status -> rn2:gauge list'
  robonet do 'all:info | grep -c linux'
  robonet do '[3.12:ping, 3.13:ping]'
  robonet do '3.12.1:ping -> rn2:exec -- cat' --json
  robonet do '@health | wc -l'`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("do takes one argument, the composition in quotes (got %d), e.g. robonet do 'rn1:status -> rn2:gauge list'", len(args))
			}
			if strings.TrimSpace(args[0]) == "" {
				return errors.New("do: the composition is empty")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := mesh.ParseComposition(args[0])
			if err != nil {
				printCaret(cmd.ErrOrStderr(), err)
				return err
			}
			return runComposition(cmd, g, e, sf)
		},
	}
	sf.add(cmd)
	return cmd
}

// stepFlags bound every step of a composition like run's flags bound one.
type stepFlags struct {
	timeout time.Duration
	batch   int
	limit   int
}

func (f *stepFlags) add(cmd *cobra.Command) {
	cmd.Flags().DurationVar(&f.timeout, "timeout", 10*time.Second, "how long each step waits for answers (per batch)")
	cmd.Flags().IntVar(&f.batch, "batch", 0, "each step sends to this many nodes at a time (0: all at once)")
	cmd.Flags().IntVar(&f.limit, "limit", 0, "each step reaches at most this many nodes, in chevron order (0: no cap)")
}

func newMacroCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "macro",
		Short: "Named compositions kept in rn_macros, usable from any node: set, run, list, rm",
		Long: `Macros are named compositions stored in the swarm's rn_macros bucket, so a macro set through
one node runs through any other. A composition calls one with @name; a macro may call macros,
but no macro may reach itself (refused when set, and again before a run) and calls nest at most
16 deep. Names are [A-Za-z][A-Za-z0-9_-]{0,63}.

` + composeHelp,
		Example: `  robonet macro set health 'all:ping -> all:gauge cpu'
  robonet macro run health
  robonet do '@health | grep -c cpu'
  robonet macro list
  robonet macro rm health`,
	}
	var sf stepFlags
	run := &cobra.Command{
		Use:   "run NAME",
		Short: "Run a macro (as robonet do '@NAME')",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := mesh.ValidMacroName(args[0]); err != nil {
				return err
			}
			return runComposition(cmd, g, mesh.MacroRef{Name: args[0], Col: 1}, sf)
		},
	}
	sf.add(run)
	cmd.AddCommand(
		&cobra.Command{
			Use:   "set NAME 'COMPOSITION'",
			Short: "Store or replace a macro (checked: name, syntax, no cycle with the stored macros)",
			Args:  cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				name, text := args[0], args[1]
				if err := mesh.ValidMacroName(name); err != nil {
					return err
				}
				if _, err := mesh.ParseComposition(text); err != nil {
					printCaret(cmd.ErrOrStderr(), err)
					return fmt.Errorf("macro @%s: %w", name, err)
				}
				return withMacros(cmd, g, func(ctx context.Context, m *mesh.Macros) error {
					mi, err := m.Set(ctx, name, text)
					if err != nil {
						return err
					}
					if g.json {
						return printComposeJSON(cmd.OutOrStdout(), mi)
					}
					fmt.Fprintf(cmd.OutOrStdout(), "macro @%s set (revision %d)\n", mi.Name, mi.Revision)
					return nil
				})
			},
		},
		run,
		&cobra.Command{
			Use:     "list",
			Aliases: []string{"ls"},
			Short:   "List the stored macros",
			Args:    cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return withMacros(cmd, g, func(ctx context.Context, m *mesh.Macros) error {
					list, err := m.List(ctx)
					if err != nil {
						return err
					}
					if g.json {
						if list == nil {
							list = []mesh.MacroInfo{}
						}
						return printComposeJSON(cmd.OutOrStdout(), list)
					}
					if len(list) == 0 {
						fmt.Fprintln(cmd.OutOrStdout(), "no macros (robonet macro set NAME 'COMPOSITION')")
						return nil
					}
					tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "NAME\tREV\tUPDATED\tCOMPOSITION")
					for _, mi := range list {
						fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", mi.Name, mi.Revision, mi.Updated.Local().Format(time.DateTime),
							strings.Join(strings.Fields(mi.Text), " "))
					}
					return tw.Flush()
				})
			},
		},
		&cobra.Command{
			Use:     "rm NAME",
			Aliases: []string{"delete"},
			Short:   "Remove a macro (macros calling it fail until it is set again)",
			Args:    cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := mesh.ValidMacroName(args[0]); err != nil {
					return err
				}
				return withMacros(cmd, g, func(ctx context.Context, m *mesh.Macros) error {
					if err := m.Delete(ctx, args[0]); err != nil {
						return err
					}
					if g.json {
						return printComposeJSON(cmd.OutOrStdout(), map[string]string{"removed": args[0]})
					}
					fmt.Fprintf(cmd.OutOrStdout(), "macro @%s removed\n", args[0])
					return nil
				})
			},
		},
	)
	return cmd
}

// withMacros connects and binds rn_macros for f, within 30 s.
func withMacros(cmd *cobra.Command, g *globals, f func(context.Context, *mesh.Macros) error) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
	defer cancel()
	c, err := g.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	m, err := c.Macros(ctx)
	if err != nil {
		return err
	}
	return f(ctx, m)
}

// printComposeJSON prints v as indented JSON without HTML escaping, so a
// composition's "->" reads as itself rather than "-\u003e".
func printComposeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// printCaret shows where a composition error is, when err has a place.
func printCaret(w io.Writer, err error) {
	var ce *mesh.ComposeError
	if errors.As(err, &ce) {
		fmt.Fprintln(w, ce.Caret())
	}
}

// runComposition runs e through a node and prints every step: exit 2 when
// some step was not ok.
func runComposition(cmd *cobra.Command, g *globals, e mesh.Expr, sf stepFlags) error {
	if sf.batch < 0 || sf.limit < 0 {
		return fmt.Errorf("--batch %d / --limit %d: must not be negative", sf.batch, sf.limit)
	}
	cat, err := localCatalogue()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	c, err := g.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	stderr := cmd.ErrOrStderr()
	opts := mesh.RunOptions{Args: cat.ArgsFromWords, Timeout: sf.timeout, Batch: sf.batch, Limit: sf.limit, From: userName()}
	f, isFile := stderr.(*os.File)
	tty := !g.json && isFile && term.IsTerminal(int(f.Fd()))
	if tty {
		var mu sync.Mutex
		answered := map[int]int{}
		opts.Progress = func(step int, _ mesh.NodeResult) {
			mu.Lock()
			defer mu.Unlock()
			answered[step]++
			fmt.Fprintf(stderr, "\rstep %d: %d answered…\033[K", step+1, answered[step])
		}
	}
	res, err := c.RunComposition(ctx, e, opts)
	if tty {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if res == nil {
		printCaret(stderr, err)
		return err
	}
	out := cmd.OutOrStdout()
	if g.json {
		if perr := printComposeJSON(out, res); perr != nil {
			return perr
		}
	} else {
		printRun(out, stderr, res)
	}
	if err != nil {
		return err
	}
	if !res.OK {
		return exitError{code: 2, err: fmt.Errorf("not every step was ok: %s", res.Line)}
	}
	return nil
}

// printRun prints each step under a header naming it — "--- step 2/3:
// all:ping (in @health)" — a gather as robonet run prints it, a local
// program's stdout and stderr as it wrote them; then the run's summary line.
func printRun(out, stderr io.Writer, res *mesh.RunResult) {
	n := len(res.Steps)
	for _, s := range res.Steps {
		head := s.Step
		if s.Kind == mesh.KindLocal {
			head = "| " + head
		}
		fmt.Fprintf(out, "--- step %d/%d: %s", s.Index+1, n, head)
		if len(s.Via) > 0 {
			fmt.Fprintf(out, " (in @%s)", strings.Join(s.Via, " > @"))
		}
		if s.Local != nil && s.Local.ExitCode != 0 {
			fmt.Fprintf(out, " · exit %d", s.Local.ExitCode)
		}
		fmt.Fprintln(out)
		switch {
		case s.Gather != nil:
			printGather(out, *s.Gather)
			if s.Error != "" {
				fmt.Fprintf(out, "%s\n", s.Error)
			}
		case s.Local != nil:
			io.WriteString(out, s.Local.Stdout)
			if s.Local.StdoutDropped > 0 {
				fmt.Fprintf(out, "\n…[%d more bytes of stdout not kept]\n", s.Local.StdoutDropped)
			}
			io.WriteString(stderr, s.Local.Stderr)
			if s.Local.StderrDropped > 0 {
				fmt.Fprintf(stderr, "\n…[%d more bytes of stderr not kept]\n", s.Local.StderrDropped)
			}
		default:
			fmt.Fprintf(out, "%s: %s\n", s.Status, s.Error)
		}
	}
	fmt.Fprintln(out, res.Line)
}
