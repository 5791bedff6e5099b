package main

import (
	"encoding/json"
	"fmt"
	"image/jpeg"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/media"
)

// needFFmpeg skips without ffmpeg, but fails in CI, which installs it.
func needFFmpeg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ffmpeg is not installed (scripts/test installs it)")
		}
		t.Skip("ffmpeg is not installed")
	}
}

// ffmpegChildren counts the ffmpeg processes whose parent is pid.
func ffmpegChildren(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …: comm may hold spaces, so split after ')'.
		s := string(stat)
		open, closeP := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closeP < open {
			continue
		}
		f := strings.Fields(s[closeP+1:])
		if len(f) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == pid && s[open+1:closeP] == "ffmpeg" {
			n++
		}
	}
	return n
}

func mediaList(t *testing.T, p *proc) ([]media.StreamInfo, error) {
	out, errOut, code := cli(t, nil, "media", "list", "--json", "--server", p.client, "--data", p.data)
	if code != 0 {
		return nil, fmt.Errorf("media list: exit %d: %s", code, errOut)
	}
	var ss []media.StreamInfo
	if err := json.Unmarshal([]byte(out), &ss); err != nil {
		return nil, fmt.Errorf("media list --json: %v: %q", err, out)
	}
	return ss, nil
}

// TestBinaryMediaSnapshotBothPaths runs `robonet up --media` with a test
// pattern and a camera that is not there, lists the streams, takes a
// snapshot over the direct path and over the relay (a real ffmpeg, real
// WebRTC on loopback, the RTP over NATS), reads each JPEG's size, sees the
// missing camera said in words, and sees no ffmpeg left after the linger.
func TestBinaryMediaSnapshotBothPaths(t *testing.T) {
	needFFmpeg(t)
	data := t.TempDir()
	p := startUp(t, data, "--gateway", "off", "--media", "test=testsrc@320x240@15,cam=/dev/video99",
		"--media-udp", "127.0.0.1:0", "--media-linger", "500ms")
	p.waitReady(t)
	if !strings.Contains(p.output(), "  media     test=testsrc, cam=/dev/video99") {
		t.Fatalf("the banner does not name the streams:\n%s", p.output())
	}
	var chev string
	testmesh.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		ss, err := mediaList(t, p)
		if err != nil {
			return err
		}
		if len(ss) != 2 {
			return fmt.Errorf("%d streams listed, want 2: %+v", len(ss), ss)
		}
		for _, s := range ss {
			if s.Stream == "test" && (s.Kind != media.KindTest || s.Codec != "H264" || s.Width != 320 || s.Height != 240 || s.FPS != 15 || s.Live) {
				return fmt.Errorf("stream test listed as %+v", s)
			}
		}
		chev = ss[0].Chevron
		return nil
	})
	env := []string{}
	base := []string{"--server", p.client, "--data", p.data}
	for _, path := range []string{"direct", "relay"} {
		file := filepath.Join(t.TempDir(), path+".jpg")
		_, errOut, code := cli(t, env, append([]string{"media", "snapshot", chev, "test", "-o", file, "--path", path}, base...)...)
		if code != 0 {
			t.Fatalf("snapshot over the %s path: exit %d: %s", path, code, errOut)
		}
		if !strings.Contains(errOut, path+" path") {
			t.Errorf("snapshot over %s does not say its path: %q", path, errOut)
		}
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := jpeg.DecodeConfig(f)
		f.Close()
		if err != nil || cfg.Width != 320 || cfg.Height != 240 {
			t.Fatalf("snapshot over %s: %dx%d, %v; want a 320x240 JPEG", path, cfg.Width, cfg.Height, err)
		}
	}
	// The missing camera and an unknown stream are said, naming them.
	_, errOut, code := cli(t, env, append([]string{"media", "snapshot", chev, "cam", "-o", filepath.Join(t.TempDir(), "x.jpg")}, base...)...)
	if code == 0 || !strings.Contains(errOut, "/dev/video99") {
		t.Errorf("snapshot of a missing camera: exit %d, %q; want an error naming /dev/video99", code, errOut)
	}
	_, errOut, code = cli(t, env, append([]string{"media", "snapshot", chev, "nosuch", "-o", filepath.Join(t.TempDir(), "x.jpg")}, base...)...)
	if code == 0 || !strings.Contains(errOut, `no stream "nosuch"`) || !strings.Contains(errOut, "cam, test") {
		t.Errorf("snapshot of an unknown stream: exit %d, %q; want one naming it and the streams there are", code, errOut)
	}
	// After the linger the encoder is gone and the list says so.
	testmesh.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		if n := ffmpegChildren(t, p.cmd.Process.Pid); n != 0 {
			return fmt.Errorf("%d ffmpeg processes still running", n)
		}
		ss, err := mediaList(t, p)
		if err != nil {
			return err
		}
		for _, s := range ss {
			if s.Live || s.Viewers != 0 {
				return fmt.Errorf("stream %s still live (%d viewers)", s.Stream, s.Viewers)
			}
			if s.Stream == "cam" && !strings.Contains(s.Error, "/dev/video99") {
				return fmt.Errorf("stream cam's error %q does not name the device", s.Error)
			}
		}
		return nil
	})
}

// TestBinaryMediaBadFlags: a bad --media is refused before the node starts.
func TestBinaryMediaBadFlags(t *testing.T) {
	for _, tc := range []struct{ args []string }{
		{[]string{"--media", "cam0"}},
		{[]string{"--media", "Cam=/dev/video0"}},
		{[]string{"--media", "a=testsrc,a=testsrc"}},
		{[]string{"--media", "a=rtsp://x"}},
		{[]string{"--media-udp", "nope"}},
		{[]string{"--media-host", "not-an-ip"}},
		{[]string{"--media-max-viewers", "0"}},
	} {
		_, errOut, code := cli(t, nil, append([]string{"up", "--data", t.TempDir(), "--listen", "127.0.0.1:0"}, tc.args...)...)
		if code == 0 || !strings.Contains(errOut, "--media") {
			t.Errorf("up %v: exit %d, %q; want a refusal naming the flag", tc.args, code, errOut)
		}
	}
}
