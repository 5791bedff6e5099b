package media

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseSpecsReadsEachKind(t *testing.T) {
	got, err := ParseSpecs(" cam0=/dev/video0, screen=:0.1 ,test=testsrc@640x480@15,clk=clock@15,big=:1@1920X1080")
	if err != nil {
		t.Fatal(err)
	}
	want := []Spec{
		{Name: "cam0", Source: "/dev/video0", Kind: KindV4L2, Width: 1280, Height: 720, FPS: 30},
		{Name: "screen", Source: ":0.1", Kind: KindX11, Width: 1280, Height: 720, FPS: 30},
		{Name: "test", Source: "testsrc", Kind: KindTest, Width: 640, Height: 480, FPS: 15},
		{Name: "clk", Source: "clock", Kind: KindClock, Width: 1280, Height: 720, FPS: 15},
		{Name: "big", Source: ":1", Kind: KindX11, Width: 1920, Height: 1080, FPS: 30},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ParseSpecs (-want +got):\n%s", d)
	}
	for _, s := range got {
		again, err := ParseSpecs(s.String())
		if err != nil || len(again) != 1 || again[0] != s {
			t.Errorf("%v does not read back: %v, %v", s, again, err)
		}
	}
}

func TestParseSpecsEmptyIsNoStreams(t *testing.T) {
	for _, s := range []string{"", "  "} {
		got, err := ParseSpecs(s)
		if err != nil || got != nil {
			t.Errorf("ParseSpecs(%q) = %v, %v; want nil, nil", s, got, err)
		}
	}
}

func TestParseSpecsRefusesBadEntriesByName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"cam0=/dev/video0,cam0=testsrc", `stream 2 "cam0=testsrc": the name "cam0" is already used by stream 1`},
		{"a=testsrc,,b=clock", `stream 2 "": empty entry`},
		{"testsrc", `no '='`},
		{"=testsrc", `no stream name`},
		{"Cam=testsrc", `stream name "Cam" has "C" at position 1`},
		{"_a=testsrc", `has "_" at position 1`},
		{"a.b=testsrc", `has "." at position 2`},
		{strings.Repeat("a", 33) + "=testsrc", `longer than 32 characters`},
		{"a=", `no source after '='`},
		{"a=/dev/sda", `unknown source "/dev/sda"`},
		{"a=/dev/videoX", `camera "/dev/videoX" is not /dev/videoN`},
		{"a=/dev/video-1", `is not /dev/videoN`},
		{"a=:", `display ":" is not :N`},
		{"a=:0.", `display ":0." is not :N`},
		{"a=:0.1.2", `display ":0.1.2" is not :N`},
		{"a=host:0", `unknown source "host:0"`},
		{"a=testsrc@640", `frame rate 640 out of range 1..60`},
		{"a=testsrc@0", `frame rate 0 out of range`},
		{"a=testsrc@fast", `frame rate "fast" is not a number`},
		{"a=testsrc@15@640x480", `size "640x480" out of place`},
		{"a=testsrc@15@20", `two frame rates`},
		{"a=testsrc@640x480@15@1", `too many '@'`},
		{"a=testsrc@640x", `size "640x" is not WxH`},
		{"a=testsrc@x480", `is not WxH`},
		{"a=testsrc@8x8", `size 8x8 out of range: each side 16..4096`},
		{"a=testsrc@8192x480", `out of range`},
		{"a=testsrc@641x480", `each side must be even`},
		{"a=clock@320x240", `the clock source needs a width of at least 640 pixels`},
	} {
		_, err := ParseSpecs(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseSpecs(%q) = %v; want an error containing %q", tc.in, err, tc.want)
		}
	}
}

func TestNewEncoderChecksAHandMadeSpec(t *testing.T) {
	for _, s := range []Spec{
		{Name: "a", Source: "testsrc", Kind: KindV4L2, Width: 640, Height: 480, FPS: 15},
		{Name: "a", Source: "testsrc", Kind: KindTest, Width: 640, Height: 480, FPS: 0},
		{Name: "A", Source: "testsrc", Kind: KindTest, Width: 640, Height: 480, FPS: 15},
		{Name: "a", Source: "testsrc", Kind: KindTest},
	} {
		if _, err := NewEncoder(s, EncoderOptions{FFmpeg: "/bin/true"}); err == nil {
			t.Errorf("NewEncoder(%+v) accepted it", s)
		}
	}
}

func FuzzParseSpecs(f *testing.F) {
	for _, s := range []string{
		"cam0=/dev/video0,screen=:0,test=testsrc@640x480@15",
		"clk=clock@1280x720@30", "a=:0.0@16x16@1", "a=testsrc@60", "a=b=c", "a=testsrc@@", ",", "a=/dev/video0000001",
		"x=testsrc@4096x4096@60,y=clock", "a=:1.2@100X100",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		specs, err := ParseSpecs(s)
		if err != nil {
			if specs != nil {
				t.Fatalf("ParseSpecs(%q) returned both %v and %v", s, specs, err)
			}
			return
		}
		names := map[string]bool{}
		for _, sp := range specs {
			if err := sp.validate(); err != nil {
				t.Fatalf("ParseSpecs(%q) accepted %+v: %v", s, sp, err)
			}
			if names[sp.Name] {
				t.Fatalf("ParseSpecs(%q) accepted the name %q twice", s, sp.Name)
			}
			names[sp.Name] = true
			again, err := ParseSpecs(sp.String())
			if err != nil || len(again) != 1 || again[0] != sp {
				t.Fatalf("%+v does not read back from %q: %v, %v", sp, sp.String(), again, err)
			}
		}
	})
}
