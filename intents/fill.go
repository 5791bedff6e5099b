package intents

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/robonet-mesh/robonet/command"
)

// maxArgv bounds the words of a command the user names.
const maxArgv = 64

// Placeholders of masked text (intents/nlu reads them as whole words).
const (
	maskNodes  = "NODES"
	maskSvc    = "SVC"
	maskPath   = "PATH"
	maskFile   = "FILE"
	maskKey    = "KEY"
	maskQuoted = "QUOTED"
	maskNum    = "NUM"
)

// commandTriggers are the words that name a command to run.
func commandTriggers() map[string]bool { return setOf("run execute exec launch invoke issue type") }

// named finds a command the user names: a quoted text after run, execute
// (or next to them), or the words after "run"/"execute" up to where the
// nodes start ("run uptime on all nodes"). The command is split into argv
// without a shell; shell syntax was refused with the sentence already.
func (c *clause) named() error {
	trig := commandTriggers()
	for i, t := range c.toks {
		if !t.quoted || t.used {
			continue
		}
		// run "…", run the command "…", execute the following program "…"
		j := i - 1
		for j >= 0 && i-j <= 3 && setOf("the a command program following shell")[c.toks[j].low] {
			j--
		}
		if j < 0 || !trig[c.toks[j].low] {
			continue
		}
		argv, err := splitCommand(t.raw)
		if err != nil {
			return err
		}
		for k := j; k <= i; k++ {
			c.toks[k].used = true
		}
		c.toks[i].mask = maskQuoted
		c.cmd = argv
		return nil
	}
	// Unquoted: "run df -h on rn1". Only plain words; a program the
	// planner refuses from words must be quoted to be meant.
	for i, t := range c.toks {
		if t.used || t.quoted || (t.low != "run" && t.low != "execute") || i+1 >= len(c.toks) {
			continue
		}
		first := c.toks[i+1]
		if first.quoted || first.used || !isProgramWord(first.raw) {
			continue
		}
		// A program the table knows, or any word followed by what only a
		// command line has: a flag or a path.
		cmdline := i+2 < len(c.toks) && !c.toks[i+2].quoted && (strings.HasPrefix(c.toks[i+2].raw, "-") || strings.HasPrefix(c.toks[i+2].raw, "/"))
		if !programWords()[first.low] && (!cmdline || fillers()[first.low] || intentWords()[first.low] || strongVerbs()[first.low] != "" ||
			c.lx.svc[first.low] != "" || actionWords()[first.low] != "") {
			continue
		}
		end := i + 1
		for end < len(c.toks) && !c.toks[end].used && !c.toks[end].quoted && !setOf("on at across in for against from")[c.toks[end].low] {
			if !isArgWord(c.toks[end].raw) {
				return fmt.Errorf("%q: name a command in quotes to run it (ask 'run \"…\" on <nodes>'); unquoted, only plain words are taken", clip(c.toks[end].raw))
			}
			end++
		}
		if refusedWords()[first.low] {
			return fmt.Errorf("%w: %q is not run from words; to mean it, name the command in quotes (run \"%s …\" on <nodes>): a dangerous step then asks for confirmation and approval",
				ErrSentenceRefused, first.raw, first.raw)
		}
		var argv []string
		for j := i + 1; j < end; j++ {
			argv = append(argv, c.toks[j].raw)
			c.toks[j].used = true
			c.toks[j].mask = maskQuoted
		}
		if len(argv) > maxArgv {
			return fmt.Errorf("a command of %d words (limit %d)", len(argv), maxArgv)
		}
		c.toks[i].used = true
		c.cmd = argv
		return nil
	}
	return nil
}

// isProgramWord is a program name as people type it: a word or a path.
func isProgramWord(w string) bool {
	if w == "" || w[0] == '-' || len(w) > 256 {
		return false
	}
	for i := 0; i < len(w); i++ {
		ch := w[i]
		if !(isLetterByte(ch) || ch >= '0' && ch <= '9' || strings.IndexByte("._/+-", ch) >= 0) {
			return false
		}
	}
	return true
}

// isArgWord is an unquoted argument: letters, digits and -._/=:,+@%.
func isArgWord(w string) bool {
	if w == "" || len(w) > 4096 {
		return false
	}
	for i := 0; i < len(w); i++ {
		ch := w[i]
		if !(isLetterByte(ch) || ch >= '0' && ch <= '9' || strings.IndexByte("-._/=:,+@%", ch) >= 0) {
			return false
		}
	}
	return true
}

// splitCommand splits a named command into argv: blanks separate words,
// single quotes group them. There is no shell, so globs and expansions
// would be passed as they are: they are refused rather than misread.
func splitCommand(s string) ([]string, error) {
	var argv []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case r == '\'':
			quoted, inWord = !quoted, true
		case !quoted && (r == ' ' || r == '\t'):
			if inWord {
				argv = append(argv, cur.String())
				cur.Reset()
				inWord = false
			}
		case !quoted && strings.ContainsRune("*?[]{}~!#", r):
			return nil, fmt.Errorf("%w: the command %q holds %q: commands run without a shell, so globs and expansions would not happen; name the files",
				ErrSentenceRefused, clip(s), string(r))
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("the command %q has an unclosed single quote", clip(s))
	}
	if inWord {
		argv = append(argv, cur.String())
	}
	if len(argv) == 0 {
		return nil, errors.New("an empty command in quotes")
	}
	if len(argv) > maxArgv {
		return nil, fmt.Errorf("a command of %d words (limit %d)", len(argv), maxArgv)
	}
	return argv, nil
}

// maskText is the clause as the classifier reads it (see package nlu):
// node phrases, services, paths, file names, keys, quotes and numbers
// replaced by placeholders, other words lower-case.
func (c *clause) maskText() string {
	var out []string
	add := func(w string) {
		if w == maskNodes && len(out) > 0 && out[len(out)-1] == maskNodes {
			return
		}
		out = append(out, w)
	}
	nouns, everyone := nodeNouns(), allWordSet()
	for i, t := range c.toks {
		w := t.low
		switch {
		case t.mask != "":
			w = t.mask
		case t.used:
		case t.quoted:
			w = maskQuoted
		case c.lx.svc[t.low] != "":
			w = maskSvc
		case isCleanPath(t.raw):
			w = maskPath
		case isFileName(t.low):
			w = maskFile
		case strings.Contains(t.low, ".") && isConfigKey(t.raw) && isLetterByte(t.raw[0]):
			w = maskKey
		case isNumber(t.raw):
			w = maskNum
		case nouns[t.low] || everyone[t.low]:
			w = maskNodes
		case (t.low == "all" || t.low == "every" || t.low == "each") && i+1 < len(c.toks) &&
			(nouns[c.toks[i+1].low] || c.toks[i+1].mask == maskNodes):
			w = maskNodes
		}
		add(w)
	}
	return strings.Join(out, " ")
}

func isNumber(s string) bool {
	return s != "" && strings.Trim(s, "0123456789.") == "" && strings.Count(s, ".") <= 1 && strings.Trim(s, ".") != ""
}

// isFileName is "report.txt": an object name ending in a known extension.
func isFileName(w string) bool {
	i := strings.LastIndexByte(w, '.')
	return i > 0 && isObjectName(w) && fileExtensions()[w[i+1:]]
}

// slot errors say what a reading lacks; the best reading's is shown when
// no reading can be planned.
type slotError struct{ msg string }

func (e *slotError) Error() string { return e.msg }

func missing(format string, a ...any) error { return &slotError{fmt.Sprintf(format, a...)} }

// fill turns a classifier label into a verb and its arguments from the
// clause's words, without marking anything used: several labels may be
// tried on one clause.
func (c *clause) fill(label string) (rule, verb string, args json.RawMessage, err error) {
	enc := func(v any) json.RawMessage { b, _ := json.Marshal(v); return b }
	switch label {
	case "ping", "info", "caps", "status":
		return label, label, nil, nil
	case "scan":
		if checks := c.scanChecks(); len(checks) > 0 {
			return "scan", "scan", enc(map[string][]string{"checks": checks}), nil
		}
		return "scan", "scan", nil, nil
	case "gauge.cpu", "gauge.mem", "gauge.disk", "gauge.net", "gauge.load", "gauge.list":
		metric := strings.TrimPrefix(label, "gauge.")
		if named := c.metricsNamed(); len(named) == 1 {
			metric = named[0]
		} else if len(named) > 1 {
			metric = "list"
		}
		return "gauge", "gauge", enc(map[string]string{"metric": metric}), nil
	case "exec.named":
		if len(c.cmd) == 0 {
			return "", "", nil, missing("which command? name it in quotes: run \"df -h\" on <nodes>")
		}
		return "exec-named", "exec", enc(map[string][]string{"argv": c.cmd}), nil
	case "exec.service", "exec.active", "exec.logs":
		svc := c.service()
		c.svcTaken = svc != ""
		if svc == "" {
			return "", "", nil, missing("which service? the planner knows: %s", strings.Join(KnownServices(), ", "))
		}
		switch label {
		case "exec.active":
			return "exec-active", "exec", enc(map[string][]string{"argv": {"systemctl", "is-active", svc}}), nil
		case "exec.logs":
			return "exec-logs", "exec", enc(map[string][]string{"argv": {"journalctl", "-u", svc, "-n", LogLines, "--no-pager"}}), nil
		}
		for _, t := range c.toks {
			if a, ok := actionWords()[t.low]; ok && !t.used {
				return "exec-service", "exec", enc(map[string][]string{"argv": {"systemctl", a, svc}}), nil
			}
		}
		return "", "", nil, missing("what should happen to %s? say restart, start, stop or reload", svc)
	case "file.put":
		p := c.firstUnused(func(t rtok) bool { return isCleanPath(t.raw) })
		if p == "" {
			return "", "", nil, missing("which file? give its absolute path on the node, e.g. \"upload /var/log/report.txt from rn2\"")
		}
		return "file-put", "file", enc(map[string]string{"op": "put", "name": path.Base(p), "path": p}), nil
	case "file.get":
		name := c.firstUnused(func(t rtok) bool { return !isCleanPath(t.raw) && isFileName(t.low) })
		p := c.firstUnused(func(t rtok) bool { return isCleanPath(t.raw) })
		if name == "" || p == "" {
			return "", "", nil, missing("copy which stored file to which path? e.g. \"copy app.conf to /etc/app/app.conf on the web nodes\"")
		}
		return "file-get", "file", enc(map[string]string{"op": "get", "name": name, "path": p}), nil
	case "config.get":
		key := c.configKey()
		if key == "" {
			return "", "", nil, missing("which config key? e.g. \"show config log.level\"")
		}
		return "config-get", "config", enc(map[string]string{"op": "get", "key": key}), nil
	case "config.set":
		return "", "", nil, missing("set which key to what? say \"set config <key> to <value>\"")
	}
	return "", "", nil, missing("not something ask plans: it runs ping, info, caps, status, gauge, scan, service actions, named commands, file and config")
}

// scanChecks are the scan checks the clause's words name (none: all).
func (c *clause) scanChecks() []string {
	topics := scanTopics()
	seen := map[string]bool{}
	for _, t := range c.toks {
		if t.used || t.quoted {
			continue
		}
		if ch, ok := topics[t.low]; ok {
			seen[ch] = true
		}
	}
	for i := 0; i+1 < len(c.toks); i++ {
		if ch, ok := topics[c.toks[i].low+"_"+c.toks[i+1].low]; ok && !c.toks[i].used {
			seen[ch] = true
		}
	}
	// "full inodes" is not also about disk space.
	if seen[command.CheckInodes] && !c.mentioned("disk", "disks", "storage", "space", "filesystem", "filesystems") {
		delete(seen, command.CheckDisk)
	}
	// "high load", "cpu" in a scan are the load check; "memory" the memory one.
	var out []string
	for _, ch := range []string{command.CheckDisk, command.CheckInodes, command.CheckMemory, command.CheckLoad,
		command.CheckZombies, command.CheckSystemd, command.CheckPorts, command.CheckClock} {
		if seen[ch] {
			out = append(out, ch)
		}
	}
	return out
}

// metricsNamed are the gauge metrics the clause's words name, sorted.
func (c *clause) metricsNamed() []string {
	mw := gaugeMetricWords()
	seen := map[string]bool{}
	for i, t := range c.toks {
		if t.used || t.quoted {
			continue
		}
		if i+1 < len(c.toks) {
			if m, ok := mw[t.low+"_"+c.toks[i+1].low]; ok {
				seen[m] = true
				continue
			}
		}
		if m, ok := mw[t.low]; ok {
			seen[m] = true
		}
	}
	var out []string
	for m := range seen {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// mentioned reports whether any token, used or not, is one of words.
func (c *clause) mentioned(ws ...string) bool {
	for _, t := range c.toks {
		if slices.Contains(ws, t.low) {
			return true
		}
	}
	return false
}

func (c *clause) service() string {
	for _, t := range c.toks {
		if s, ok := c.lx.svc[t.low]; ok && !t.used && !t.quoted {
			return s
		}
	}
	return ""
}

func (c *clause) firstUnused(ok func(rtok) bool) string {
	for _, t := range c.toks {
		if !t.used && !t.quoted && ok(t) {
			return t.raw
		}
	}
	return ""
}

// configKey is the key a config question names: the word after "key"
// (or "config", "setting"), else a dotted key anywhere.
func (c *clause) configKey() string {
	nonKey := setOf("config configuration setting settings key value the of for in a is")
	for i, t := range c.toks {
		if t.used || t.quoted || !setOf("key config configuration setting")[t.low] {
			continue
		}
		for j := i + 1; j < len(c.toks) && j <= i+2; j++ {
			n := c.toks[j]
			if !n.used && !n.quoted && isConfigKey(n.raw) && !nonKey[n.low] && !fillers()[n.low] {
				return n.raw
			}
		}
	}
	return c.firstUnused(func(t rtok) bool {
		return strings.Contains(t.raw, ".") && isConfigKey(t.raw) && isLetterByte(t.raw[0]) && !isFileName(t.low)
	})
}
