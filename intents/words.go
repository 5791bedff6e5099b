package intents

import (
	_ "embed"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// The planner's data: word classes and the phrasing table, embedded in the
// binary and read once (they never change while it runs).
var (
	//go:embed data/words.txt
	wordsData string
	//go:embed data/phrasings.tsv
	phrasingsData string
)

// wordClasses is words.txt read: each class a set, and for map classes the
// value each word stands for (the word itself when none is given).
type wordClasses struct {
	sets map[string]map[string]bool
	maps map[string]map[string]string
}

// loadWords parses words.txt; the data is embedded, so an error is a bug
// in the data that the tests catch, and the planner then works without it.
var loadWords = sync.OnceValues(func() (*wordClasses, error) { return parseWords(wordsData) })

// parseWords reads "[class]" headers and blank-separated entries (word or
// word=value; a_b is the phrase "a b" as patterns write it).
func parseWords(data string) (*wordClasses, error) {
	wc := &wordClasses{sets: map[string]map[string]bool{}, maps: map[string]map[string]string{}}
	class := ""
	for n, line := range strings.Split(data, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") || len(line) < 3 {
				return nil, fmt.Errorf("words.txt:%d: bad section header %q", n+1, line)
			}
			class = line[1 : len(line)-1]
			if _, dup := wc.sets[class]; dup {
				return nil, fmt.Errorf("words.txt:%d: section [%s] twice", n+1, class)
			}
			wc.sets[class], wc.maps[class] = map[string]bool{}, map[string]string{}
			continue
		}
		if class == "" {
			return nil, fmt.Errorf("words.txt:%d: words before any [section]", n+1)
		}
		for _, f := range strings.Fields(line) {
			w, v, ok := strings.Cut(f, "=")
			if !ok {
				v = w
			}
			if w == "" || v == "" {
				return nil, fmt.Errorf("words.txt:%d: bad entry %q", n+1, f)
			}
			wc.sets[class][w] = true
			wc.maps[class][w] = v
		}
	}
	return wc, nil
}

// words returns the word classes (empty ones if the data is broken).
func words() *wordClasses {
	wc, err := loadWords()
	if err != nil {
		return &wordClasses{sets: map[string]map[string]bool{}, maps: map[string]map[string]string{}}
	}
	return wc
}

// set is one class as a set; callers must not modify it.
func (wc *wordClasses) set(class string) map[string]bool { return wc.sets[class] }

// value maps one class's words to what they stand for.
func (wc *wordClasses) value(class string) map[string]string { return wc.maps[class] }

func setOf(list string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(list) {
		m[w] = true
	}
	return m
}

func nodeNouns() map[string]bool  { return words().set("node-nouns") }
func fillers() map[string]bool    { return words().set("fillers") }
func allWordSet() map[string]bool { return words().set("all-words") }

// refusedWords are programs and actions the planner never plans from
// words; a command the user names ("run \"reboot\" on rn2") is planned as
// exec, with the catalogue's risk.
func refusedWords() map[string]bool       { return words().set("refused") }
func negations() map[string]bool          { return words().set("negations") }
func scheduling() map[string]bool         { return words().set("scheduling") }
func actionWords() map[string]string      { return words().value("actions") }
func strongVerbs() map[string]string      { return words().value("strong-verbs") }
func osNames() map[string]string          { return words().value("os") }
func scanTopics() map[string]string       { return words().value("scan-topics") }
func gaugeMetricWords() map[string]string { return words().value("gauge-metrics") }
func fileExtensions() map[string]bool     { return words().set("file-extensions") }
func intentWords() map[string]bool        { return words().set("intent-words") }
func nodeStates() map[string]bool         { return words().set("node-states") }
func programWords() map[string]bool       { return words().set("programs") }

// numberWords maps "three" to 3.
func numberWords() map[string]int {
	out := map[string]int{}
	for w, v := range words().value("numbers") {
		if n, err := strconv.Atoi(v); err == nil {
			out[w] = n
		}
	}
	return out
}

// knownServices maps the service names the planner puts into exec argv
// (and their aliases) to the unit name. Nothing else from a sentence
// reaches exec unless the user names a command.
func knownServices() map[string]string { return words().value("services") }

// KnownServices lists the unit names exec rules may name, sorted.
func KnownServices() []string {
	var out []string
	for _, v := range knownServices() {
		out = append(out, v)
	}
	return sortedSet(out)
}

// ExecWords is every word the planner may put into an exec argv from words
// alone: the programs, their fixed arguments and KnownServices. A command
// the user names is split into its own argv.
func ExecWords() []string {
	return sortedSet(append(KnownServices(), "systemctl", "restart", "start", "stop", "reload", "is-active",
		"journalctl", "-u", "-n", LogLines, "--no-pager"))
}

// Phrasings returns the planner's phrasing table (data/phrasings.tsv).
// Every example is tested to give exactly its Plan.
func Phrasings() []Phrasing {
	ps, err := parsePhrasings(phrasingsData)
	if err != nil {
		return nil
	}
	return ps
}

func parsePhrasings(data string) ([]Phrasing, error) {
	var out []Phrasing
	for n, line := range strings.Split(data, "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			return nil, fmt.Errorf("phrasings.tsv:%d: %d fields, want rule, pattern, example, plan", n+1, len(f))
		}
		out = append(out, Phrasing{Rule: f[0], Pattern: f[1], Example: f[2], Plan: f[3]})
	}
	return out, nil
}
