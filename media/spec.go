package media

import (
	"fmt"
	"strconv"
	"strings"
)

// The kinds of source a Spec can name.
const (
	KindV4L2  = "v4l2"    // a camera: /dev/videoN
	KindX11   = "x11grab" // an X display: :N or :N.M
	KindTest  = "testsrc" // ffmpeg's lavfi testsrc2 pattern
	KindClock = "clock"   // Go-generated frames carrying the wall clock as a barcode (see ReadBarcode)
)

// The defaults and limits of a Spec's size and rate.
const (
	DefaultWidth  = 1280
	DefaultHeight = 720
	DefaultFPS    = 30

	minSide, maxSide = 16, 4096
	minFPS, maxFPS   = 1, 60
	maxNameLen       = 32
	maxDeviceNumber  = 1 << 20 // far beyond any /dev/videoN or X display, small enough to print
)

// Spec is one stream a node offers: --media name=source[@WxH][@FPS],
// comma-separated.
type Spec struct {
	Name   string // a subject token: [a-z0-9][a-z0-9_-]{0,31}
	Source string // as given: /dev/video0, :0 or :0.0, testsrc, clock
	Kind   string // KindV4L2, KindX11, KindTest or KindClock
	Width  int    // 16..4096, even; default 1280 (asked of the device for v4l2)
	Height int    // 16..4096, even; default 720
	FPS    int    // 1..60; default 30
}

// String gives the spec back in the form ParseSpecs reads.
func (s Spec) String() string {
	return fmt.Sprintf("%s=%s@%dx%d@%d", s.Name, s.Source, s.Width, s.Height, s.FPS)
}

// ParseSpecs reads the --media flag: comma-separated name=source[@WxH][@FPS]
// entries, for example "cam0=/dev/video0,screen=:0,test=testsrc@640x480@15".
// An empty (or blank) string is no streams. Each error names the entry at
// fault and what is wrong with it; two entries with the same name are refused.
func ParseSpecs(s string) ([]Spec, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var specs []Spec
	seen := map[string]int{}
	for i, entry := range strings.Split(s, ",") {
		spec, err := parseSpec(strings.TrimSpace(entry))
		if err != nil {
			return nil, fmt.Errorf("media stream %d %q: %w", i+1, entry, err)
		}
		if j, dup := seen[spec.Name]; dup {
			return nil, fmt.Errorf("media stream %d %q: the name %q is already used by stream %d; give each stream its own name", i+1, entry, spec.Name, j+1)
		}
		seen[spec.Name] = i
		specs = append(specs, spec)
	}
	return specs, nil
}

// parseSpec reads one name=source[@WxH][@FPS] entry.
func parseSpec(entry string) (Spec, error) {
	if entry == "" {
		return Spec{}, fmt.Errorf("empty entry (a stream is name=source, e.g. cam0=/dev/video0)")
	}
	name, rest, ok := strings.Cut(entry, "=")
	if !ok {
		return Spec{}, fmt.Errorf("no '=': a stream is name=source[@WxH][@FPS], e.g. cam0=/dev/video0@1280x720@30")
	}
	name = strings.TrimSpace(name)
	if err := checkName(name); err != nil {
		return Spec{}, err
	}
	parts := strings.Split(strings.TrimSpace(rest), "@")
	spec := Spec{Name: name, Source: parts[0], Width: DefaultWidth, Height: DefaultHeight, FPS: DefaultFPS}
	if len(parts) > 3 {
		return Spec{}, fmt.Errorf("too many '@': the form is source[@WxH][@FPS]")
	}
	sawSize, sawFPS := false, false
	for _, p := range parts[1:] {
		switch {
		case strings.ContainsAny(p, "xX"):
			if sawSize || sawFPS {
				return Spec{}, fmt.Errorf("size %q out of place: the form is source[@WxH][@FPS]", p)
			}
			w, h, err := parseSize(p)
			if err != nil {
				return Spec{}, err
			}
			spec.Width, spec.Height, sawSize = w, h, true
		default:
			if sawFPS {
				return Spec{}, fmt.Errorf("two frame rates: the form is source[@WxH][@FPS]")
			}
			fps, err := parseFPS(p)
			if err != nil {
				return Spec{}, err
			}
			spec.FPS, sawFPS = fps, true
		}
	}
	kind, err := sourceKind(spec.Source)
	if err != nil {
		return Spec{}, err
	}
	spec.Kind = kind
	if err := spec.validate(); err != nil {
		return Spec{}, err
	}
	return spec, nil
}

// validate checks a Spec however it was built: NewEncoder calls it too.
func (s Spec) validate() error {
	if err := checkName(s.Name); err != nil {
		return err
	}
	kind, err := sourceKind(s.Source)
	if err != nil {
		return err
	}
	if s.Kind != kind {
		return fmt.Errorf("source %q is of kind %q, not %q", s.Source, kind, s.Kind)
	}
	if err := checkSize(s.Width, s.Height); err != nil {
		return err
	}
	if s.FPS < minFPS || s.FPS > maxFPS {
		return fmt.Errorf("frame rate %d out of range %d..%d", s.FPS, minFPS, maxFPS)
	}
	if s.Kind == KindClock && s.Width < barcodeWidth {
		return fmt.Errorf("the clock source needs a width of at least %d pixels for its barcode, not %d", barcodeWidth, s.Width)
	}
	return nil
}

// checkName accepts a subject token: [a-z0-9][a-z0-9_-]{0,31}.
func checkName(name string) error {
	const rule = "[a-z0-9][a-z0-9_-]{0,31}"
	if name == "" {
		return fmt.Errorf("no stream name before '=' (a name is %s)", rule)
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("stream name %.40q is longer than %d characters (a name is %s)", name, maxNameLen, rule)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '_' || c == '-')
		if !ok {
			return fmt.Errorf("stream name %q has %q at position %d (a name is %s)", name, string(rune(c)), i+1, rule)
		}
	}
	return nil
}

// sourceKind tells what a source names: /dev/videoN, :N[.M], testsrc or clock.
func sourceKind(src string) (string, error) {
	switch {
	case src == "":
		return "", fmt.Errorf("no source after '=' (a source is /dev/videoN, :N, testsrc or clock)")
	case src == "testsrc":
		return KindTest, nil
	case src == "clock":
		return KindClock, nil
	case strings.HasPrefix(src, "/dev/video"):
		if _, ok := smallNumber(strings.TrimPrefix(src, "/dev/video")); !ok {
			return "", fmt.Errorf("camera %q is not /dev/videoN (N a number)", src)
		}
		return KindV4L2, nil
	case strings.HasPrefix(src, ":"):
		disp, screen, hasScreen := strings.Cut(src[1:], ".")
		_, okd := smallNumber(disp)
		_, oks := smallNumber(screen)
		if !okd || hasScreen && !oks {
			return "", fmt.Errorf("display %q is not :N or :N.M (N, M numbers)", src)
		}
		return KindX11, nil
	}
	return "", fmt.Errorf("unknown source %q (a source is /dev/videoN for a camera, :N for an X display, testsrc or clock)", src)
}

// smallNumber reads a decimal of at most 7 digits, no sign.
func smallNumber(s string) (int, bool) {
	if s == "" || len(s) > 7 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n <= maxDeviceNumber
}

func parseSize(p string) (w, h int, err error) {
	ws, hs, _ := strings.Cut(strings.ToLower(p), "x")
	w, okw := smallNumber(ws)
	h, okh := smallNumber(hs)
	if !okw || !okh {
		return 0, 0, fmt.Errorf("size %q is not WxH (e.g. 1280x720)", p)
	}
	return w, h, checkSize(w, h)
}

func checkSize(w, h int) error {
	if w < minSide || w > maxSide || h < minSide || h > maxSide {
		return fmt.Errorf("size %dx%d out of range: each side %d..%d", w, h, minSide, maxSide)
	}
	if w%2 != 0 || h%2 != 0 {
		return fmt.Errorf("size %dx%d: each side must be even (H.264 4:2:0)", w, h)
	}
	return nil
}

func parseFPS(p string) (int, error) {
	fps, ok := smallNumber(p)
	if !ok {
		return 0, fmt.Errorf("frame rate %q is not a number (the form is source[@WxH][@FPS])", p)
	}
	if fps < minFPS || fps > maxFPS {
		return 0, fmt.Errorf("frame rate %d out of range %d..%d", fps, minFPS, maxFPS)
	}
	return fps, nil
}
