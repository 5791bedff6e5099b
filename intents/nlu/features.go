package nlu

import (
	"strings"
	"unicode"
)

// Placeholders are the upper-case words of masked text that stand for what
// the rules recognised; they count as whole words.
func Placeholders() []string {
	return []string{"FILE", "KEY", "NODES", "NUM", "PATH", "QUOTED", "SVC"}
}

// maxBytes, maxWords and maxRunes bound what of one clause is looked at, so
// that a huge input costs no more than a long sentence: a clause's first
// maxBytes and maxWords words; a word longer than maxRunes adds no character
// n-grams.
const (
	maxBytes = 4096
	maxWords = 64
	maxRunes = 40
)

// Words splits masked text into the words the classifier sees: placeholders
// unchanged, every other word lower-cased with anything but letters and
// digits removed. As the engine's masking does, "all", "every" or "each"
// just before NODES and adjacent NODES merge into one NODES, so that
// "all NODES" and "NODES" read alike whoever masked them.
func Words(masked string) []string {
	if len(masked) > maxBytes {
		masked = masked[:maxBytes]
	}
	var out []string
	for _, f := range strings.Fields(masked) {
		if len(out) == maxWords {
			break
		}
		if f == "NODES" && len(out) > 0 {
			switch out[len(out)-1] {
			case "NODES":
				continue
			case "all", "every", "each":
				out[len(out)-1] = f
				continue
			}
		}
		if isPlaceholder(f) {
			out = append(out, f)
			continue
		}
		w := strings.Map(func(r rune) rune {
			if unicode.IsLetter(r) || unicode.IsDigit(r) {
				return unicode.ToLower(r)
			}
			return -1
		}, f)
		if w != "" {
			out = append(out, w)
		}
	}
	return out
}

func isPlaceholder(w string) bool {
	switch w {
	case "FILE", "KEY", "NODES", "NUM", "PATH", "QUOTED", "SVC":
		return true
	}
	return false
}

// features calls emit with every feature of a clause's words: "w:" word
// unigrams, "b:" bigrams with "<s>" and "</s>" markers, "c:" character
// 3..5-grams of each non-placeholder word between "<" and ">". A feature may
// be emitted more than once.
func features(words []string, emit func(string)) {
	prev := "<s>"
	for _, w := range words {
		emit("w:" + w)
		emit("b:" + prev + "_" + w)
		prev = w
		if isPlaceholder(w) {
			continue
		}
		r := []rune("<" + w + ">")
		if len(r) > maxRunes+2 {
			continue
		}
		for n := 3; n <= 5; n++ {
			for i := 0; i+n <= len(r); i++ {
				emit("c:" + string(r[i:i+n]))
			}
		}
	}
	emit("b:" + prev + "_</s>")
}
