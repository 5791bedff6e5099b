package media

import (
	"context"
	"io"
	"time"
)

// The clock source's barcode: the wall clock in milliseconds modulo 2^40 as
// barcodeBits black or white blocks of barcodeBlock×barcodeBlock pixels,
// left to right from the most significant bit, in the top rows of each
// frame. The blocks sit on macroblock boundaries so H.264 keeps them crisp;
// a reader samples each block's centre against a threshold of 128 (the
// gateway's page does the same in JavaScript).
const (
	barcodeBits  = 40
	barcodeBlock = 16
	barcodeWidth = barcodeBits * barcodeBlock
	barcodeMask  = 1<<barcodeBits - 1

	lumaBlack = 16  // video-range black
	lumaWhite = 235 // video-range white
	chromaNil = 128 // no colour
)

// ReadBarcode decodes the clock source's barcode from a decoded frame whose
// luma (or gray level) at (x, y) is y(x, y): bit 39-i is block i's centre
// (16i+8, 8) at 128 or above. The result is the frame's generation time,
// time.UnixMilli() modulo 2^40; compare it with the reader's clock modulo
// 2^40 too.
func ReadBarcode(y func(x, y int) uint8) uint64 {
	var ms uint64
	for i := 0; i < barcodeBits; i++ {
		if y(barcodeBlock*i+barcodeBlock/2, barcodeBlock/2) >= 128 {
			ms |= 1 << (barcodeBits - 1 - i)
		}
	}
	return ms
}

// clockFrame draws frame n of the clock source into buf, a yuv420p frame
// of w×h (w, h even, w ≥ barcodeWidth, len(buf) ≥ w*h*3/2): the barcode of
// ms in the top barcodeBlock rows, a diagonal gray ramp moving by two
// pixels a frame everywhere else (so the encoder has motion to code).
// ramp is the sawtooth newClockRamp(w) makes.
func clockFrame(buf []byte, w, h int, ms uint64, n int, ramp []byte) {
	luma := buf[:w*h]
	shift := (2 * n) % 256
	for y := 0; y < h; y++ {
		off := (y + shift) % 256
		copy(luma[y*w:(y+1)*w], ramp[off:off+w])
	}
	for i := 0; i < barcodeBits; i++ {
		v := byte(lumaBlack)
		if ms>>(barcodeBits-1-i)&1 == 1 {
			v = lumaWhite
		}
		for y := 0; y < barcodeBlock && y < h; y++ {
			row := luma[y*w+i*barcodeBlock : y*w+(i+1)*barcodeBlock]
			for x := range row {
				row[x] = v
			}
		}
	}
	chroma := buf[w*h : w*h*3/2]
	for i := range chroma {
		chroma[i] = chromaNil
	}
}

// newClockRamp returns a sawtooth of gray levels long enough for any row
// of a w-wide frame at any shift.
func newClockRamp(w int) []byte {
	ramp := make([]byte, w+256)
	for i := range ramp {
		ramp[i] = byte(lumaBlack + (i%256)*(lumaWhite-lumaBlack)/255)
	}
	return ramp
}

// writeClock writes clock frames of spec's size to w at spec.FPS, paced by
// a ticker (ticks missed while a write blocks are dropped, not queued),
// until ctx ends or a write fails. Each frame carries the wall clock at the
// moment it was drawn.
func writeClock(ctx context.Context, w io.Writer, spec Spec) error {
	frame := make([]byte, spec.Width*spec.Height*3/2)
	ramp := newClockRamp(spec.Width)
	tick := time.NewTicker(time.Second / time.Duration(spec.FPS))
	defer tick.Stop()
	for n := 0; ; n++ {
		clockFrame(frame, spec.Width, spec.Height, uint64(time.Now().UnixMilli())&barcodeMask, n, ramp)
		if _, err := w.Write(frame); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
