package media

import (
	"context"
	"testing"
	"time"
)

func TestClockFrameBarcodeReadsBack(t *testing.T) {
	const w, h = 640, 480
	ramp := newClockRamp(w)
	frame := make([]byte, w*h*3/2)
	for i, ms := range []uint64{0, 1, barcodeMask, 0x5555555555, 0xAAAAAAAAAA, 1_800_000_000_123 & barcodeMask} {
		clockFrame(frame, w, h, ms, i*37, ramp)
		got := ReadBarcode(func(x, y int) uint8 { return frame[y*w+x] })
		if got != ms {
			t.Errorf("frame %d: barcode reads %#x, want %#x", i, got, ms)
		}
		for j, c := range frame[w*h:] {
			if c != chromaNil {
				t.Fatalf("frame %d: chroma byte %d is %d, want %d (gray)", i, j, c, chromaNil)
			}
		}
	}
}

func TestClockFrameMoves(t *testing.T) {
	const w, h = 640, 64
	ramp := newClockRamp(w)
	a, b := make([]byte, w*h*3/2), make([]byte, w*h*3/2)
	clockFrame(a, w, h, 42, 0, ramp)
	clockFrame(b, w, h, 42, 1, ramp)
	if string(a[barcodeBlock*w:w*h]) == string(b[barcodeBlock*w:w*h]) {
		t.Error("frames 0 and 1 have the same picture below the barcode; the pattern should move")
	}
	if string(a[:barcodeBlock*w]) != string(b[:barcodeBlock*w]) {
		t.Error("the barcode rows differ for the same time")
	}
}

// frameSink collects what writeClock writes, one Write per frame.
type frameSink struct {
	size   int
	frames [][]byte
	enough int
	cancel context.CancelFunc
	t      *testing.T
}

func (s *frameSink) Write(p []byte) (int, error) {
	if len(p) != s.size {
		s.t.Errorf("write of %d bytes, want one whole frame of %d", len(p), s.size)
	}
	s.frames = append(s.frames, append([]byte(nil), p...))
	if len(s.frames) == s.enough {
		s.cancel()
	}
	return len(p), nil
}

func TestWriteClockWritesWholeFramesWithTheTime(t *testing.T) {
	spec := Spec{Name: "clk", Source: "clock", Kind: KindClock, Width: 640, Height: 32, FPS: 60}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sink := &frameSink{size: spec.Width * spec.Height * 3 / 2, enough: 3, cancel: cancel, t: t}
	before := uint64(time.Now().UnixMilli()) & barcodeMask
	if err := writeClock(ctx, sink, spec); err != context.Canceled {
		t.Errorf("writeClock = %v, want context.Canceled", err)
	}
	after := uint64(time.Now().UnixMilli()) & barcodeMask
	if len(sink.frames) != 3 {
		t.Fatalf("%d frames, want 3", len(sink.frames))
	}
	var last uint64
	for i, f := range sink.frames {
		ms := ReadBarcode(func(x, y int) uint8 { return f[y*spec.Width+x] })
		// Modulo 2^40 the clock wraps every ~35 years; the test does not straddle it.
		if ms < before || ms > after || ms < last {
			t.Errorf("frame %d carries %d, want a non-decreasing time in [%d, %d]", i, ms, before, after)
		}
		last = ms
	}
}
