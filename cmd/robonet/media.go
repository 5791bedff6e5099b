package main

import (
	"bytes"
	"fmt"
	"image/jpeg"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/robonet-mesh/robonet/media"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
)

func newMediaCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "media",
		Short: "Camera, screen and test-pattern streams the nodes offer (robonet up --media): list them, take a snapshot",
	}
	cmd.AddCommand(newMediaListCmd(g), newMediaSnapshotCmd(g))
	return cmd
}

func newMediaListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list [selector]",
		Short: "Every node's streams: name, source, codec, size, live, viewers (--json: one object per stream)",
		Long: `list asks every node that is not offline (or those the selector picks, as robonet run
does) for its streams. A stream is live while its encoder runs (someone watches, or did
within the linger); viewers counts WebRTC sessions and relays. ERROR is the last run's
failure (a missing or busy camera, ffmpeg missing), as a viewer would be told.`,
		Example: "  robonet media list\n  robonet media list 'caps=camera' --json",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
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
			if len(args) == 1 {
				sel, err := subjects.ParseSelector(args[0])
				if err != nil {
					return err
				}
				members = mesh.Resolve(sel, members)
			}
			lists, lerr := media.ListAll(ctx, c, members)
			streams := []media.StreamInfo{}
			for _, l := range lists {
				streams = append(streams, l.Streams...)
			}
			if g.json {
				if err := printJSON(cmd.OutOrStdout(), streams); err != nil {
					return err
				}
			} else {
				printStreams(cmd.OutOrStdout(), streams)
			}
			if lerr != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "robonet: some nodes did not answer: %v\n", lerr)
			}
			return nil
		},
	}
}

func printStreams(w io.Writer, streams []media.StreamInfo) {
	if len(streams) == 0 {
		fmt.Fprintln(w, "no streams (a node offers some with: robonet up --media cam0=/dev/video0,test=testsrc)")
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHEVRON\tSTREAM\tSOURCE\tKIND\tCODEC\tSIZE\tFPS\tLIVE\tVIEWERS\tERROR")
	for _, s := range streams {
		live := "no"
		if s.Live {
			live = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%dx%d\t%d\t%s\t%d\t%s\n", s.Chevron, s.Stream, s.Source, s.Kind, s.Codec,
			s.Width, s.Height, s.FPS, live, s.Viewers, s.Error)
	}
	_ = tw.Flush()
}

func newMediaSnapshotCmd(g *globals) *cobra.Command {
	var (
		out     string
		path    string
		timeout time.Duration
		ffmpeg  string
	)
	cmd := &cobra.Command{
		Use:   "snapshot <chevron> <stream> -o frame.jpg",
		Short: "Save one frame of a node's stream as a JPEG, received over WebRTC like a viewer",
		Long: `snapshot opens a WHEP session to the node as your key (viewing needs tier 1), waits for
the first keyframe and decodes it with ffmpeg. It takes the direct path (WebRTC to the
node's UDP port) and falls back to the relay over NATS when the node takes no direct
sessions or ICE does not connect (--path picks one). -o - writes the JPEG to standard
output; what it did goes to standard error.`,
		Example: "  robonet media snapshot 3.12.7.1 cam0 -o frame.jpg",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			chev, err := subjects.Parse(args[0])
			if err != nil {
				return err
			}
			if chev.IsZero() {
				return fmt.Errorf("snapshot: %q is not a node's chevron", args[0])
			}
			if out == "" {
				return fmt.Errorf("snapshot: -o FILE (or -o - for standard output)")
			}
			ctx := cmd.Context()
			c, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			errw := cmd.ErrOrStderr()
			jpg, via, err := media.Snapshot(ctx, c, chev, args[1], media.SnapshotOptions{FFmpeg: ffmpeg, Path: path, Timeout: timeout, Loopback: true,
				Note: func(s string) { fmt.Fprintf(errw, "robonet: %s\n", s) }})
			if err != nil {
				return fmt.Errorf("snapshot of %s on %s: %w", args[1], chev, err)
			}
			size := ""
			if cfg, err := jpeg.DecodeConfig(bytes.NewReader(jpg)); err == nil {
				size = fmt.Sprintf("%dx%d, ", cfg.Width, cfg.Height)
			}
			if out == "-" {
				_, err = cmd.OutOrStdout().Write(jpg)
				return err
			}
			if err := writeFileAtomic(out, jpg); err != nil {
				return fmt.Errorf("snapshot: %w", err)
			}
			fmt.Fprintf(errw, "robonet: wrote %s (%s%d bytes, %s path)\n", out, size, len(jpg), via)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "the JPEG file to write (- for standard output)")
	cmd.Flags().StringVar(&path, "path", "", "direct or relay (default: direct, then relay)")
	cmd.Flags().DurationVar(&timeout, "timeout", 20*time.Second, "give up after this long")
	cmd.Flags().StringVar(&ffmpeg, "ffmpeg", "ffmpeg", "the ffmpeg that decodes the frame")
	return cmd
}

// writeFileAtomic writes data to a temporary file beside path and renames
// it into place: a reader never sees half a frame.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
