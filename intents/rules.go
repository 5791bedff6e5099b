package intents

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// Errors of the rule planner.
var (
	// ErrNotUnderstood is wrapped when no rule of the table explains the
	// sentence; the message says what was not understood and suggests the
	// nearest phrasings of the table.
	ErrNotUnderstood = errors.New("the rule planner did not understand the sentence")
	// ErrSentenceRefused is wrapped when a sentence tries to pass shell
	// syntax or programs the planner never runs (";", "&&", backticks,
	// "$(…)", "rm", "curl", …).
	ErrSentenceRefused = errors.New("sentence refused")
	// ErrBadSentence is wrapped for input that is not a sentence at all:
	// empty, over MaxSentence bytes, not UTF-8, control characters.
	ErrBadSentence = errors.New("bad sentence")
)

// MaxSentence is the longest sentence PlanRules reads, in bytes.
const MaxSentence = 1000

// Rule planner defaults, as its phrasing table documents them.
const (
	// DefaultPickN is how many nodes "the ones that answered slowly" (or
	// quickly) means when the sentence gives no number.
	DefaultPickN = 3
	// DefaultCountN is how many nodes "the busiest nodes" (plural, no
	// number) means.
	DefaultCountN = 3
	// BusyLoad and IdleLoad are the per-CPU loads "busy" and "idle" mean;
	// "overloaded" means load>=1.
	BusyLoad = "0.7"
	IdleLoad = "0.2"
	// LogLines is how many journal lines "nginx logs" asks for.
	LogLines = "50"
)

// Vocabulary is what the swarm's registry declares, so that the rule
// planner can tell "AI nodes" (a capability) from "the cameras" (a tag
// value) from "rn2" (a name). Matching ignores case and simple plurals.
type Vocabulary struct {
	Caps  []string            // declared capabilities: gpu, ai, …
	Tags  map[string][]string // tag key → values seen: role → camera, web
	Names []string            // node names
}

// VocabularyFrom collects the capabilities, tags and names of members,
// sorted and without repeats.
func VocabularyFrom(members []wire.Member) Vocabulary {
	v := Vocabulary{Tags: map[string][]string{}}
	for _, m := range members {
		v.Caps = append(v.Caps, m.Caps...)
		if m.Name != "" {
			v.Names = append(v.Names, m.Name)
		}
		for k, val := range m.Tags {
			v.Tags[k] = append(v.Tags[k], val)
		}
	}
	v.Caps = sortedSet(v.Caps)
	v.Names = sortedSet(v.Names)
	for k := range v.Tags {
		v.Tags[k] = sortedSet(v.Tags[k])
	}
	return v
}

func sortedSet(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// Phrasing is one row of the rule planner's table: a pattern for people,
// an example sentence, and the plan the example gives with ExampleVocabulary
// (in the form BriefPlan writes).
type Phrasing struct {
	Rule    string // the rule's name, as step.Why cites it
	Pattern string
	Example string
	Plan    string
}

// ExampleVocabulary is the swarm the phrasing table's examples assume:
// capabilities ai and gpu, tags role=camera|web|db and site=lab, nodes
// rn1..rn3.
func ExampleVocabulary() Vocabulary {
	return Vocabulary{
		Caps:  []string{"ai", "gpu"},
		Tags:  map[string][]string{"role": {"camera", "db", "web"}, "site": {"lab"}},
		Names: []string{"rn1", "rn2", "rn3"},
	}
}

// Phrasings returns the rule planner's table. Every example is tested to
// give exactly its Plan.
func Phrasings() []Phrasing {
	return []Phrasing{
		{"ping", "ping <nodes>", "ping everything", "s1: all ping"},
		{"ping", "is <node> up? / who is up?", "is rn2 up?", "s1: rn2 ping"},
		{"ping", "which <nodes> are reachable / online / alive", "which gpu nodes are reachable", "s1: caps=gpu ping"},
		{"info", "what hardware do <nodes> have / inventory of <nodes>", "what hardware do the AI nodes have", "s1: caps=ai info"},
		{"info", "which kernel / OS / arch are <nodes> running", "which kernel are the cameras running", "s1: tag=role:camera info"},
		{"caps", "what can <nodes> do", "what can rn1 do", "s1: rn1 caps"},
		{"caps", "list the capabilities of <nodes>", "list the capabilities of all nodes", "s1: all caps"},
		{"status", "status of <nodes>", "status of region 3.12", "s1: 3.12 status"},
		{"status", "how are <nodes> doing", "how are the web servers doing", "s1: tag=role:web status"},
		{"gauge", "get cpu from <nodes>", "get cpu from the gpu nodes", `s1: caps=gpu gauge {"metric":"cpu"}`},
		{"gauge", "memory / ram usage on <nodes>", "memory usage on linux nodes", `s1: os=linux gauge {"metric":"mem"}`},
		{"gauge", "disk space / storage on <nodes>", "how much disk space is left on the db servers", `s1: tag=role:db gauge {"metric":"disk"}`},
		{"gauge", "network traffic / bandwidth on <nodes>", "network traffic in zone 3", `s1: 3 gauge {"metric":"net"}`},
		{"gauge", "load average of <nodes> / how busy are <nodes>", "how busy are the AI nodes", `s1: caps=ai gauge {"metric":"load"}`},
		{"gauge", "all metrics / vitals / stats of <nodes>", "show all metrics for rn2", `s1: rn2 gauge {"metric":"list"}`},
		{"scan", "scan <nodes> for anomalies / problems", "scan AI nodes for anomalies", "s1: caps=ai scan"},
		{"scan", "check <nodes> for full disks / inodes / memory pressure / high load / zombies / failed units / new ports / clock skew", "check the cameras for full disks and zombies", `s1: tag=role:camera scan {"checks":["disk","zombies"]}`},
		{"scan", "is anything wrong with <nodes>?", "is anything wrong with the trusted nodes?", "s1: trust>=2 scan"},
		{"exec-service", "restart / start / stop / reload <service> on <nodes>", "restart nginx on web nodes", `s1: tag=role:web exec {"argv":["systemctl","restart","nginx"]}`},
		{"exec-service", "stop <service> on <node>", "stop docker on rn3", `s1: rn3 exec {"argv":["systemctl","stop","docker"]}`},
		{"exec-active", "is <service> running on <nodes>", "is nginx running on the web nodes?", `s1: tag=role:web exec {"argv":["systemctl","is-active","nginx"]}`},
		{"exec-logs", "show <service> logs on <nodes>", "show nginx logs on rn1", `s1: rn1 exec {"argv":["journalctl","-u","nginx","-n","50","--no-pager"]}`},
		{"exec-uptime", "uptime of <nodes> / how long have <nodes> been up", "uptime of the linux nodes", `s1: os=linux exec {"argv":["uptime"]}`},
		{"file-put", "upload <path> from <node> [as <name>]", "upload /etc/hosts from rn2 as hosts-rn2", `s1: rn2 file {"name":"hosts-rn2","op":"put","path":"/etc/hosts"}`},
		{"file-get", "copy <name> to <path> on <nodes> [overwriting]", "copy app.conf to /etc/app/app.conf on the web nodes", `s1: tag=role:web file {"name":"app.conf","op":"get","path":"/etc/app/app.conf"}`},
		{"config-get", "show config <key>", "show config log.level", `s1: all config {"key":"log.level","op":"get"} limit 1`},
		{"config-set", "set [config] <key> to <value>", "set config log.level to debug", `s1: all config {"key":"log.level","op":"set","value":"debug"} limit 1`},
		{"chevron", "… in region <a.b> / zone <a> / under <prefix>", "ping everything in region 3.12", "s1: 3.12 ping"},
		{"os", "… linux / windows / mac nodes", "ping the windows machines", "s1: os=windows ping"},
		{"load", "… nodes with load under / over <x>", "get memory from nodes with load under 0.5", `s1: load<0.5 gauge {"metric":"mem"}`},
		{"busy", "… busy / idle / overloaded nodes", "scan the busy nodes", "s1: load>0.7 scan"},
		{"trust", "… trusted / fully trusted nodes, trust level <n>", "ping the trusted nodes", "s1: trust>=2 ping"},
		{"busiest", "… the <n> busiest <nodes>", "get cpu from the 5 busiest nodes", `s1: all gauge {"metric":"cpu"} order load_desc limit 5`},
		{"idlest", "… the <n> idlest / least loaded <nodes>", "scan the 2 idlest gpu nodes", "s1: caps=gpu scan order load_asc limit 2"},
		{"count", "… any <n> <nodes> / at most <n> <nodes>", "ping any 3 cameras", "s1: tag=role:camera ping limit 3"},
		{"or", "… <a> or <b> nodes", "ping the gpu or AI nodes", "s1: caps=gpu|caps=ai ping"},
		{"selector", "… <selector> (written as for robonet run)", "scan caps=gpu,load<0.5", "s1: load<0.5,caps=gpu scan"},
		{"then-slowest", "<step>, then <step> from the ones that answered slowly / the <n> slowest", "ping everything, then get cpu from the ones that answered slowly", `s1: all ping; s2: all gauge {"metric":"cpu"} from s1 slowest 3 after s1`},
		{"then-fastest", "<step>, then <step> on the <n> fastest", "ping the cameras, then get memory from the 2 fastest", `s1: tag=role:camera ping; s2: tag=role:camera gauge {"metric":"mem"} from s1 fastest 2 after s1`},
		{"then-failed", "<step>, then <step> on the ones that did not answer / failed", "ping the cameras, then show the status of the ones that did not answer", "s1: tag=role:camera ping; s2: tag=role:camera status from s1 failed after s1"},
		{"then-ok", "<step>, then <step> on the ones that answered", "ping all, then scan the ones that answered", "s1: all ping; s2: all scan from s1 ok after s1"},
		{"then-them", "<step>, then <step> on them", "scan the AI nodes, then get memory from them", `s1: caps=ai scan; s2: caps=ai gauge {"metric":"mem"} from s1 all after s1`},
		{"then", "<step>, then <step> (on other nodes)", "ping rn1, then scan the gpu nodes", "s1: rn1 ping; s2: caps=gpu scan after s1"},
	}
}

// BriefPlan writes a plan's steps on one line, the form of Phrasing.Plan:
// "s1: caps=ai scan; s2: all gauge {"metric":"cpu"} from s1 slowest 3 after s1".
func BriefPlan(p Plan) string {
	var parts []string
	for _, s := range p.Steps {
		b := fmt.Sprintf("%s: %s %s", s.ID, s.Selector, s.Verb)
		if a := compactArgs(s.Args); a != "" {
			b += " " + a
		}
		if s.From != nil {
			b += fmt.Sprintf(" from %s %s", s.From.Step, s.From.Which)
			if s.From.N > 0 {
				b += " " + strconv.Itoa(s.From.N)
			}
		}
		if s.Order != "" {
			b += " order " + s.Order
		}
		if s.Limit > 0 {
			b += " limit " + strconv.Itoa(s.Limit)
		}
		if len(s.DependsOn) > 0 {
			b += " after " + strings.Join(s.DependsOn, ",")
		}
		parts = append(parts, b)
	}
	return strings.Join(parts, "; ")
}

// compactArgs re-encodes args with sorted keys, "" for none.
func compactArgs(args json.RawMessage) string {
	if len(args) == 0 || string(args) == "null" || string(args) == "{}" {
		return ""
	}
	var v any
	if json.Unmarshal(args, &v) != nil {
		return string(args)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return string(args)
	}
	return string(b)
}

// knownServices maps the service names the rule planner puts into exec
// argv (and their aliases) to the unit name. Nothing else from a sentence
// ever reaches exec.
func knownServices() map[string]string {
	m := map[string]string{}
	for _, s := range []string{
		"nginx", "apache2", "httpd", "caddy", "haproxy", "traefik", "docker", "containerd", "podman",
		"ssh", "sshd", "robonet", "postgresql", "mysql", "mariadb", "redis", "redis-server", "memcached",
		"mongod", "rabbitmq-server", "mosquitto", "nats-server", "cron", "crond", "chrony", "chronyd",
		"systemd-timesyncd", "ntp", "kubelet", "k3s", "prometheus", "grafana-server", "node_exporter",
		"telegraf", "influxdb", "ollama", "nvidia-persistenced", "bluetooth", "avahi-daemon", "cups",
		"rsyslog", "fail2ban", "firewalld", "ufw", "networkmanager", "php-fpm", "elasticsearch",
	} {
		m[s] = s
	}
	m["networkmanager"] = "NetworkManager"
	m["postgres"] = "postgresql"
	m["apache"] = "apache2"
	m["mongodb"] = "mongod"
	m["grafana"] = "grafana-server"
	return m
}

// KnownServices lists the unit names exec rules may name, sorted.
func KnownServices() []string {
	var out []string
	for _, v := range knownServices() {
		out = append(out, v)
	}
	return sortedSet(out)
}

// ExecWords is every word the rule planner may put into an exec argv:
// the programs, their fixed arguments and KnownServices.
func ExecWords() []string {
	return sortedSet(append(KnownServices(), "systemctl", "restart", "start", "stop", "reload", "is-active",
		"journalctl", "-u", "-n", LogLines, "--no-pager", "uptime"))
}

// PlanRules turns a sentence into a plan with the offline rule table (see
// Phrasings), using live to recognise capabilities, tags and node names.
// It is deterministic and does no I/O. Errors wrap ErrBadSentence,
// ErrSentenceRefused or ErrNotUnderstood; a plan it returns passes
// Validate(cat).
func PlanRules(sentence string, cat *command.Catalogue, live Vocabulary) (Plan, error) {
	if err := checkRuleSentence(sentence); err != nil {
		return Plan{}, err
	}
	norm := expandContractions(sentence)
	parts := splitThen(norm)
	if len(parts) > MaxSteps {
		return Plan{}, fmt.Errorf("%w: %d steps chained with 'then' (limit %d)", ErrNotUnderstood, len(parts), MaxSteps)
	}
	lx := newLexicon(live)
	p := Plan{Sentence: sentence, Planner: PlannerRules}
	for i, part := range parts {
		c := &clause{toks: tokenize(part), lx: lx}
		var prev *Step
		if i > 0 {
			prev = &p.Steps[i-1]
		}
		st, err := c.plan(prev)
		if err != nil {
			return Plan{}, notUnderstood(sentence, err)
		}
		st.ID = "s" + strconv.Itoa(i+1)
		p.Steps = append(p.Steps, st)
	}
	if err := p.Validate(cat); err != nil {
		return Plan{}, fmt.Errorf("%w: %q gives a plan that does not validate: %w", ErrNotUnderstood, clip(sentence), err)
	}
	return p, nil
}

// checkRuleSentence refuses what is not a sentence, and shell syntax.
func checkRuleSentence(s string) error {
	if strings.TrimSpace(s) == "" {
		return fmt.Errorf("%w: empty sentence: say what to do, e.g. \"scan AI nodes for anomalies\"", ErrBadSentence)
	}
	if len(s) > MaxSentence {
		return fmt.Errorf("%w: %d bytes (limit %d): say it shorter, or chain fewer steps", ErrBadSentence, len(s), MaxSentence)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: not valid UTF-8", ErrBadSentence)
	}
	for i, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return fmt.Errorf("%w: control or format character %U at byte %d: write the sentence on one line", ErrBadSentence, r, i)
		}
	}
	refuse := func(what string) error {
		return fmt.Errorf("%w: %q contains %s; the rule planner never passes sentence text to a shell (chain steps with \"then\")",
			ErrSentenceRefused, clip(s), what)
	}
	switch {
	case strings.Contains(s, "`"):
		return refuse("backticks (command substitution)")
	case strings.Contains(s, "$"):
		return refuse("'$' (shell expansion such as $(…) or ${…})")
	case strings.Contains(s, ";"):
		return refuse("';' (a command separator)")
	case strings.Contains(s, "&"):
		return refuse("'&' (a shell operator such as && or &)")
	case strings.Contains(s, "\\"):
		return refuse("a backslash")
	}
	// '|' only inside a literal selector ("caps=gpu|tag=role:camera");
	// '<' and '>' only in load and trust comparisons.
	for _, w := range strings.Fields(s) {
		if strings.Contains(w, "|") && !(strings.ContainsAny(w, "=<>") && strings.Trim(w, "|") == w && !strings.Contains(w, "||")) {
			return refuse("'|' (a pipe)")
		}
	}
	rest := cmpRE(s)
	if strings.ContainsAny(rest, "<>") {
		return refuse("'<' or '>' outside a load or trust comparison (a redirection)")
	}
	return nil
}

// cmpRE removes "load < 0.5"-style comparisons (and the operators of
// literal selectors) from s, so that what is left must not hold < or >.
func cmpRE(s string) string {
	low := asciiLower(s) // same byte offsets as s
	var b strings.Builder
	i := 0
	for i < len(s) {
		if j := matchComparison(low, i); j > i {
			b.WriteByte(' ')
			i = j
			continue
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

// matchComparison returns the end of "load|trust [ ]op[ ]number" at i, or i.
func matchComparison(low string, i int) int {
	for _, kw := range []string{"load", "trust"} {
		if !strings.HasPrefix(low[i:], kw) || (i > 0 && isWordByte(low[i-1])) {
			continue
		}
		j := i + len(kw)
		for j < len(low) && low[j] == ' ' {
			j++
		}
		k := j
		for k < len(low) && strings.IndexByte("<>=", low[k]) >= 0 && k-j < 2 {
			k++
		}
		if k == j {
			continue
		}
		for k < len(low) && low[k] == ' ' {
			k++
		}
		n := k
		for n < len(low) && (low[n] >= '0' && low[n] <= '9' || low[n] == '.') {
			n++
		}
		if n == k {
			continue
		}
		return n
	}
	return i
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_'
}

// expandContractions rewrites "didn't" as "did not", "what's" as "what is".
// Only ASCII spellings are rewritten, so byte offsets stay meaningful.
func expandContractions(s string) string {
	s = strings.NewReplacer("’", "'", "‘", "'", "“", `"`, "”", `"`).Replace(s)
	words := strings.Fields(s)
	for i, w := range words {
		low := asciiLower(w)
		core := strings.TrimRight(low, "?!.,")
		tail := w[len(core):]
		switch {
		case core == "can't" || core == "cannot":
			words[i] = "can not" + tail
		case core == "won't":
			words[i] = "will not" + tail
		case strings.HasSuffix(core, "n't"):
			words[i] = w[:len(core)-3] + " not" + tail
		case strings.HasSuffix(core, "'s"):
			switch base := core[:len(core)-2]; base {
			case "what", "who", "how", "that", "it", "there", "here", "where", "which":
				words[i] = w[:len(base)] + " is" + tail
			}
		case strings.HasSuffix(core, "'re"), strings.HasSuffix(core, "'ve"), strings.HasSuffix(core, "'ll"),
			strings.HasSuffix(core, "'m"), strings.HasSuffix(core, "'d"):
			k := strings.LastIndexByte(core, '\'')
			words[i] = w[:k] + " " + w[k+1:]
		}
	}
	return strings.Join(words, " ")
}

// asciiLower lowers ASCII letters only, keeping every byte offset.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// splitThen splits "A, then B and then C" into its clauses. A "then"
// with nothing before or after it leaves an empty clause, which plan
// refuses.
func splitThen(s string) []string {
	words := strings.Fields(s)
	var parts []string
	var cur []string
	flush := func() {
		if len(cur) > 0 && strings.EqualFold(cur[len(cur)-1], "and") {
			cur = cur[:len(cur)-1]
		}
		parts = append(parts, strings.Join(cur, " "))
		cur = nil
	}
	for i := 0; i < len(words); i++ {
		low := strings.ToLower(strings.Trim(words[i], ",."))
		next := ""
		if i+1 < len(words) {
			next = strings.ToLower(strings.Trim(words[i+1], ",."))
		}
		switch {
		case low == "then" || low == "afterwards":
			flush()
			continue
		case low == "after" && next == "that":
			flush()
			i++
			continue
		}
		cur = append(cur, words[i])
	}
	flush()
	return parts
}

// rtok is one word of a clause.
type rtok struct {
	raw    string // as written, surrounding punctuation removed
	low    string
	quoted bool // came from "…"
	comma  bool // a comma followed it
	used   bool
}

func tokenize(s string) []rtok {
	var out []rtok
	for len(s) > 0 {
		s = strings.TrimLeft(s, " ")
		if s == "" {
			break
		}
		if s[0] == '"' {
			end := strings.IndexByte(s[1:], '"')
			if end >= 0 {
				q := s[1 : 1+end]
				out = append(out, rtok{raw: q, low: strings.ToLower(q), quoted: true})
				s = s[2+end:]
				if strings.HasPrefix(s, ",") {
					out[len(out)-1].comma = true
					s = s[1:]
				}
				continue
			}
			s = s[1:]
			continue
		}
		end := strings.IndexByte(s, ' ')
		if end < 0 {
			end = len(s)
		}
		w := s[:end]
		s = s[end:]
		if strings.ContainsAny(w, "=<>|") {
			w = strings.TrimRight(w, "?!.")
			comma := strings.HasSuffix(w, ",")
			w = strings.TrimRight(w, ",")
			out = append(out, rtok{raw: w, low: strings.ToLower(w), comma: comma})
			continue
		}
		for _, piece := range strings.SplitAfter(w, ",") {
			t := cleanWord(piece)
			if t.raw != "" {
				out = append(out, t)
			} else if t.comma && len(out) > 0 {
				out[len(out)-1].comma = true
			}
		}
	}
	return out
}

func cleanWord(w string) rtok {
	var t rtok
	w = strings.TrimLeft(w, "(\"'")
	for len(w) > 0 {
		last := w[len(w)-1]
		if strings.IndexByte(",.?!:)\"'", last) < 0 {
			break
		}
		if last == ',' {
			t.comma = true
		}
		w = w[:len(w)-1]
	}
	if strings.HasSuffix(asciiLower(w), "'s") {
		w = w[:len(w)-2]
	}
	t.raw, t.low = w, strings.ToLower(w)
	return t
}

// lexicon is the vocabulary prepared for matching.
type lexicon struct {
	caps  map[string]string   // lower → as declared
	vals  map[string][]string // lower tag value → "key:value" terms, sorted
	keys  map[string]string   // lower tag key → key
	names map[string]string   // lower → name
	svc   map[string]string
}

func newLexicon(v Vocabulary) *lexicon {
	lx := &lexicon{caps: map[string]string{}, vals: map[string][]string{}, keys: map[string]string{},
		names: map[string]string{}, svc: knownServices()}
	ok := func(term string) bool { _, err := subjects.ParseSelector(term); return err == nil }
	for _, c := range sortedSet(v.Caps) {
		if _, dup := lx.caps[strings.ToLower(c)]; !dup && ok("caps="+c) {
			lx.caps[strings.ToLower(c)] = c
		}
	}
	keys := make([]string, 0, len(v.Tags))
	for k := range v.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !ok("tag=" + k) {
			continue
		}
		if _, dup := lx.keys[strings.ToLower(k)]; !dup {
			lx.keys[strings.ToLower(k)] = k
		}
		for _, val := range sortedSet(v.Tags[k]) {
			if val != "" && ok("tag="+k+":"+val) {
				lx.vals[strings.ToLower(val)] = append(lx.vals[strings.ToLower(val)], k+":"+val)
			}
		}
	}
	for _, n := range sortedSet(v.Names) {
		if _, dup := lx.names[strings.ToLower(n)]; !dup && ok(n) && n != "all" {
			lx.names[strings.ToLower(n)] = n
		}
	}
	return lx
}

// vocabTerm is one vocabulary match.
type vocabTerm struct {
	kind int    // rankName, rankOther (tag, os) or rankCaps
	term string // selector term
	key  string // tag key or "os=", for "and" between values of one key
	rule string // the node rule: os, caps, tag or name
}

// Ranks order the terms of one selector alternative: names must come
// before a caps list, or the grammar reads them as capabilities.
const (
	rankName = iota
	rankOther
	rankLiteral
	rankCaps
)

// lookup matches a word against the vocabulary, trying simple singulars.
// Operating systems come first, as runtime.GOOS names them.
func (lx *lexicon) lookup(low string) (vocabTerm, bool) {
	if g, ok := osNames()[low]; ok {
		return vocabTerm{kind: rankOther, term: "os=" + g, key: "os=", rule: "os"}, true
	}
	for _, w := range singulars(low) {
		if c, ok := lx.caps[w]; ok {
			return vocabTerm{kind: rankCaps, term: "caps=" + c, rule: "caps"}, true
		}
		if kv, ok := lx.vals[w]; ok {
			k, _, _ := strings.Cut(kv[0], ":")
			return vocabTerm{kind: rankOther, term: "tag=" + kv[0], key: k, rule: "tag"}, true
		}
		if k, ok := lx.keys[w]; ok {
			return vocabTerm{kind: rankOther, term: "tag=" + k, key: k + "=", rule: "tag"}, true
		}
		if n, ok := lx.names[w]; ok {
			return vocabTerm{kind: rankName, term: n, rule: "name"}, true
		}
	}
	return vocabTerm{}, false
}

func osNames() map[string]string {
	return map[string]string{"linux": "linux", "windows": "windows", "darwin": "darwin", "macos": "darwin",
		"mac": "darwin", "macs": "darwin", "osx": "darwin", "freebsd": "freebsd", "openbsd": "openbsd", "netbsd": "netbsd"}
}

func singulars(w string) []string {
	out := []string{w}
	if strings.HasSuffix(w, "ies") && len(w) > 4 {
		out = append(out, w[:len(w)-3]+"y")
	}
	if strings.HasSuffix(w, "es") && len(w) > 3 {
		out = append(out, w[:len(w)-2])
	}
	if strings.HasSuffix(w, "s") && len(w) > 2 {
		out = append(out, w[:len(w)-1])
	}
	return out
}

// The word classes below are functions, so that nothing is package state.

func setOf(words string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(words) {
		m[w] = true
	}
	return m
}

func nodeNouns() map[string]bool {
	return setOf("node nodes machine machines host hosts server servers box boxes device devices member members peer peers instance instances")
}

// fillers may stand anywhere without changing the plan.
func fillers() map[string]bool {
	return setOf(`the a an some any all every each everything everyone everybody everywhere whole entire both
		of on in at to for from with by about across within under into onto over and or
		please kindly can could would will should you me us i we my our your their its it them they those these
		that this which what who whom whose how much many is are was were be been being am do does did done
		have has had get got give show tell report display list print read fetch see look let know need want
		like just now currently current right quickly also too there here so first run execute perform make
		node nodes machine machines host hosts server servers box boxes device devices member members peer peers
		instance instances ones one fleet swarm cluster mesh result results output check find whether if
		again then up down left`)
}

// refusedWords are programs and actions the rule planner never plans.
func refusedWords() map[string]bool {
	return setOf(`rm rmdir curl wget sudo su sh bash zsh dash fish chmod chown chgrp dd mkfs fdisk parted eval exec shell
		script python python3 perl ruby node.js nc netcat ncat socat telnet kill killall pkill reboot shutdown poweroff
		halt delete remove erase wipe format truncate destroy drop apt apt-get yum dnf pip npm install uninstall
		upgrade mv cp tee crontab iptables useradd userdel passwd`)
}

func negations() map[string]bool {
	return setOf("not except excluding exclude without but unless besides apart other others rest no never neither nor")
}

func scheduling() map[string]bool {
	return setOf(`daily hourly weekly monthly tomorrow tonight later minutes minute hours hour seconds schedule
		scheduled periodically when whenever until while times repeat repeatedly forever loop always`)
}

func actionWords() map[string]string {
	return map[string]string{"restart": "restart", "start": "start", "stop": "stop", "reload": "reload",
		"bounce": "restart", "relaunch": "restart", "kick": "restart", "cycle": "restart", "restarting": "restart",
		"stopping": "stop", "starting": "start", "reloading": "reload"}
}

// strongVerbs name a verb outright; two in one clause are two actions.
func strongVerbs() map[string]bool {
	return setOf("ping scan gauge info inventory caps capabilities status")
}

func numberWords() map[string]int {
	return map[string]int{"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
		"eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "twenty": 20, "couple": 2, "few": 3,
		"dozen": 12}
}

// clause is one "then"-separated part of a sentence while it is planned.
type clause struct {
	toks []rtok
	lx   *lexicon

	rule     string // the verb rule that matched
	verb     string
	args     json.RawMessage
	sel      selBuild
	from     *Pick
	order    string
	limit    int
	allWord  bool           // "everything", "all nodes": all nodes on purpose
	chevs    map[int]string // token index → chevron prefix found there
	matched  []string       // the words the verb rule matched
	selRules []string       // the node rules that matched
	notes    []string
	hint     string // said when nothing matched
}

// plan runs the stages: verbs that capture free text, node words, the
// other verbs, the vocabulary, and then what is left over.
func (c *clause) plan(prev *Step) (Step, error) {
	if len(c.toks) == 0 {
		return Step{}, errors.New("an empty step around 'then'")
	}
	if !c.configVerbs() && !c.fileVerbs() {
		c.execVerbs()
	}
	if err := c.literalSelectors(); err != nil {
		return Step{}, err
	}
	c.chevrons(true)
	c.counts()
	if prev != nil {
		c.references(prev)
	}
	c.loads()
	c.trusts()
	c.chevrons(false)
	c.allWords()
	if c.verb == "" {
		c.keywordVerbs()
	}
	c.vocabulary()
	if err := c.leftovers(); err != nil {
		return Step{}, err
	}
	if c.verb == "" {
		if c.hint != "" {
			return Step{}, errors.New(c.hint)
		}
		return Step{}, errors.New("no action found (ping, info, caps, status, gauge, scan, exec of a service, file, config)")
	}
	selector, err := c.sel.render()
	if err != nil {
		return Step{}, err
	}
	st := Step{Selector: selector, Verb: c.verb, Args: c.args, Order: c.order, Limit: c.limit}
	if prev != nil {
		st.DependsOn = []string{prev.ID}
		if c.from == nil && c.sel.empty() && !c.allWord {
			c.from = &Pick{Step: prev.ID, Which: PickAll}
			c.noteRule("then-them")
		}
		c.noteRule("then")
		if c.from != nil && c.sel.empty() {
			st.Selector = prev.Selector
		}
		st.From = c.from
	}
	switch {
	case c.verb == "config" && c.sel.empty() && !c.allWord && st.From == nil && st.Limit == 0:
		st.Limit = 1
		c.notes = append(c.notes, "rn_config is shared, one node suffices")
	case c.rule == "file-put" && c.sel.empty() && st.From == nil:
		return Step{}, errors.New("say which node to upload from, e.g. \"upload /etc/hosts from rn2\"")
	}
	st.Why = c.why(st)
	return st, nil
}

func (c *clause) why(st Step) string {
	w := fmt.Sprintf("rule %s matched %q; nodes %s", c.rule, strings.Join(c.matched, " "), st.Selector)
	if len(c.selRules) > 0 {
		w += " by rule " + strings.Join(c.selRules, ", ")
	}
	if st.From != nil {
		w += fmt.Sprintf("; picks %s", st.From.Which)
		if st.From.N > 0 {
			w += " " + strconv.Itoa(st.From.N)
		}
		w += " of " + st.From.Step
	}
	if len(c.notes) > 0 {
		w += "; " + strings.Join(c.notes, "; ")
	}
	if len(w) > 200 {
		cut := 197
		for cut > 0 && !utf8.RuneStart(w[cut]) {
			cut--
		}
		w = w[:cut] + "..."
	}
	return w
}

// ---- matching ----

// pel is one element of a pattern: alternatives of word sequences.
type pel struct {
	alts [][]string
	opt  bool
}

// compile reads a pattern: elements separated by blanks, alternatives by
// '|', words of a multi-word alternative joined by '_', '?' marks an
// optional element, and #n #f #chev #svc #path #obj #key #val #tier are
// placeholders whose values are captured.
func compile(spec string) []pel {
	var out []pel
	for _, f := range strings.Fields(spec) {
		var e pel
		if strings.HasPrefix(f, "?") {
			e.opt, f = true, f[1:]
		}
		for _, a := range strings.Split(f, "|") {
			e.alts = append(e.alts, strings.Split(a, "_"))
		}
		out = append(out, e)
	}
	return out
}

type match struct {
	start, end int
	caps       []string
	words      []string // the literal words matched, in order
}

// find returns the leftmost match of spec among unused tokens.
func (c *clause) find(spec string) (match, bool) { return c.findWhere(spec, nil) }

// findWhere returns the leftmost match of spec that ok accepts (nil: any).
func (c *clause) findWhere(spec string, ok func(match) bool) (match, bool) {
	p := compile(spec)
	for i := range c.toks {
		if end, caps, words, hit := c.matchAt(p, i, nil, nil); hit && end > i {
			m := match{start: i, end: end, caps: caps, words: words}
			if ok == nil || ok(m) {
				return m, true
			}
		}
	}
	return match{}, false
}

// take finds spec and marks its tokens used.
func (c *clause) take(spec string) (match, bool) {
	m, ok := c.find(spec)
	if ok {
		c.use(m.start, m.end)
	}
	return m, ok
}

func (c *clause) use(start, end int) {
	for i := start; i < end; i++ {
		c.toks[i].used = true
	}
}

func (c *clause) matchAt(p []pel, i int, caps, words []string) (int, []string, []string, bool) {
	if len(p) == 0 {
		return i, caps, words, true
	}
	e := p[0]
	for _, alt := range e.alts {
		j := i
		cc := slices.Clone(caps)
		ww := slices.Clone(words)
		good := true
		for _, w := range alt {
			if j >= len(c.toks) || c.toks[j].used {
				good = false
				break
			}
			t := c.toks[j]
			if strings.HasPrefix(w, "#") {
				v, ok := c.placeholder(w, t)
				if !ok {
					good = false
					break
				}
				cc = append(cc, v)
			} else {
				if t.quoted || t.low != w {
					good = false
					break
				}
				ww = append(ww, w)
			}
			j++
		}
		if !good {
			continue
		}
		if end, c2, w2, ok := c.matchAt(p[1:], j, cc, ww); ok {
			return end, c2, w2, true
		}
	}
	if e.opt {
		return c.matchAt(p[1:], i, caps, words)
	}
	return 0, nil, nil, false
}

func (c *clause) placeholder(kind string, t rtok) (string, bool) {
	if t.quoted && kind != "#val" {
		return "", false
	}
	switch kind {
	case "#n":
		if n, ok := numberWords()[t.low]; ok {
			return strconv.Itoa(n), true
		}
		n, err := strconv.Atoi(t.raw)
		if err != nil || n < 1 || n > MaxNodes || t.raw[0] == '0' {
			return "", false
		}
		return strconv.Itoa(n), true
	case "#f":
		if t.raw == "" || strings.Trim(t.raw, "0123456789.") != "" || strings.Count(t.raw, ".") > 1 || strings.Trim(t.raw, ".") == "" {
			return "", false
		}
		return t.raw, true
	case "#tier":
		if len(t.raw) == 1 && t.raw[0] >= '0' && t.raw[0] <= '3' {
			return t.raw, true
		}
		return "", false
	case "#chev":
		if t.raw == "" || t.raw[0] < '0' || t.raw[0] > '9' {
			return "", false
		}
		ch, err := subjects.Parse(t.raw)
		if err != nil {
			return "", false
		}
		return ch.String(), true
	case "#svc":
		s, ok := c.lx.svc[t.low]
		return s, ok
	case "#path":
		return t.raw, isCleanPath(t.raw)
	case "#obj":
		return t.raw, isObjectName(t.raw)
	case "#key":
		return t.raw, isConfigKey(t.raw) && !fillers()[t.low]
	case "#val":
		if t.quoted {
			return t.raw, len(t.raw) <= command.MaxConfigValue
		}
		return t.raw, !setOf("on in at for across from")[t.low]
	}
	return "", false
}

func isCleanPath(p string) bool {
	if len(p) < 2 || len(p) > 4096 || p[0] != '/' || path.Clean(p) != p {
		return false
	}
	for i := 0; i < len(p); i++ {
		ch := p[i]
		if !(isLetterByte(ch) || ch >= '0' && ch <= '9' || strings.IndexByte("._/@+-", ch) >= 0) {
			return false
		}
	}
	return true
}

func isObjectName(n string) bool {
	if n == "" || len(n) > 255 || !isLetterByte(n[0]) && !(n[0] >= '0' && n[0] <= '9') || strings.HasSuffix(n, "/") || strings.Contains(n, "..") || strings.Contains(n, "//") {
		return false
	}
	for i := 0; i < len(n); i++ {
		ch := n[i]
		if !(isLetterByte(ch) || ch >= '0' && ch <= '9' || strings.IndexByte("._/-", ch) >= 0) {
			return false
		}
	}
	return true
}

func isConfigKey(k string) bool {
	if k == "" || len(k) > 256 || k[0] == '.' || k[len(k)-1] == '.' || strings.Contains(k, "..") {
		return false
	}
	letter := false
	for i := 0; i < len(k); i++ {
		ch := k[i]
		switch {
		case isLetterByte(ch):
			letter = true
		case ch >= '0' && ch <= '9', strings.IndexByte("-/_=.", ch) >= 0:
		default:
			return false
		}
	}
	return letter
}

func isLetterByte(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// has reports whether an unused token is one of words.
func (c *clause) has(words map[string]bool) bool {
	for _, t := range c.toks {
		if !t.used && words[t.low] {
			return true
		}
	}
	return false
}

// useAll marks every unused token in words used and says how many.
func (c *clause) useAll(words map[string]bool) int {
	n := 0
	for i := range c.toks {
		if !c.toks[i].used && words[c.toks[i].low] {
			c.toks[i].used = true
			n++
		}
	}
	return n
}

func (c *clause) setVerb(rule, verb string, args any, words ...string) {
	c.rule, c.verb, c.matched = rule, verb, words
	if args != nil {
		b, _ := json.Marshal(args)
		c.args = b
	}
}

// ---- stage 1: verbs whose arguments are taken from the sentence ----

func (c *clause) configVerbs() bool {
	namesConfig := func(m match) bool {
		return slices.ContainsFunc(m.words, func(w string) bool {
			return w == "config" || w == "configuration" || w == "setting"
		})
	}
	for _, r := range []struct {
		spec string
		ok   func(match) bool
	}{
		{"config|configuration set #key ?to|= #val", nil},
		{"set|change|update|configure ?the ?config|configuration|setting ?key ?of #key to|=|as #val", nil},
		{"set ?the config|configuration|setting ?key ?of #key #val", nil},
	} {
		if m, ok := c.findWhere(r.spec, r.ok); ok {
			c.use(m.start, m.end)
			c.setVerb("config-set", "config", map[string]string{"op": "set", "key": m.caps[0], "value": m.caps[1]}, m.words...)
			return true
		}
	}
	for _, r := range []struct {
		spec string
		ok   func(match) bool
	}{
		{"config|configuration get #key", nil},
		{"get|show|read|print|fetch|display|what_is ?me ?the ?current config|configuration|setting ?key|value ?of|for #key", nil},
		{"what_is ?the ?value ?of #key set_to|in_the_config|in_config|in_the_configuration", nil},
		{"?the value ?of #key in_the_config|in_config|in_the_configuration", nil},
		{"?the value|setting of #key", func(m match) bool { return namesConfig(m) || slices.Contains(m.words, "value") }},
	} {
		if m, ok := c.findWhere(r.spec, r.ok); ok {
			c.use(m.start, m.end)
			c.setVerb("config-get", "config", map[string]string{"op": "get", "key": m.caps[0]}, m.words...)
			return true
		}
	}
	return false
}

func (c *clause) fileVerbs() bool {
	// put: the node's file goes into rn_files.
	if m, ok := c.find("file put #obj #path"); ok {
		c.use(m.start, m.end)
		c.setVerb("file-put", "file", map[string]string{"op": "put", "name": m.caps[0], "path": m.caps[1]}, m.words...)
		return true
	}
	if m, ok := c.find("file get #obj #path"); ok {
		c.use(m.start, m.end)
		c.setVerb("file-get", "file", map[string]string{"op": "get", "name": m.caps[0], "path": m.caps[1]}, m.words...)
		return true
	}
	if m, ok := c.find("upload|collect|grab|fetch|pull|save|get|backup|back_up|archive|copy|download ?the ?file #path"); ok {
		// "copy /a/b to /c/d on X" names a path twice: not a put.
		if _, twice := c.findAfter(m.end, "to|into #path"); !twice {
			c.use(m.start, m.end)
			name := path.Base(m.caps[0])
			if n, ok := c.take("as|named|called|under_the_name #obj"); ok {
				name = n.caps[0]
			}
			c.setVerb("file-put", "file", map[string]string{"op": "put", "name": name, "path": m.caps[0]}, m.words...)
			return true
		}
	}
	if m, ok := c.find("copy|push|deploy|distribute|send|install|download|write|place|put|roll_out ?the ?file|object #obj to|into|at|as #path"); ok {
		c.use(m.start, m.end)
		args := map[string]any{"op": "get", "name": m.caps[0], "path": m.caps[1]}
		if c.useAll(setOf("overwriting overwrite replacing replace force forcing")) > 0 {
			args["overwrite"] = true
		}
		c.setVerb("file-get", "file", args, m.words...)
		return true
	}
	return false
}

// findAfter matches spec starting at or after index from.
func (c *clause) findAfter(from int, spec string) (match, bool) {
	p := compile(spec)
	for i := from; i < len(c.toks); i++ {
		if end, caps, words, ok := c.matchAt(p, i, nil, nil); ok && end > i {
			return match{start: i, end: end, caps: caps, words: words}, true
		}
	}
	return match{}, false
}

func (c *clause) execVerbs() bool {
	// Uptime first: "how long have the cameras been up".
	if m, ok := c.take("uptime|uptimes"); ok {
		c.setVerb("exec-uptime", "exec", map[string][]string{"argv": {"uptime"}}, m.words...)
		return true
	}
	if m, ok := c.find("how long"); ok {
		if n, ok := c.findAfter(m.end, "?been up|running|online"); ok && !c.hasService() {
			c.use(m.start, m.end)
			c.use(n.start, n.end)
			c.setVerb("exec-uptime", "exec", map[string][]string{"argv": {"uptime"}}, append(m.words, n.words...)...)
			return true
		}
	}
	svcAt := -1
	for i, t := range c.toks {
		if !t.used && !t.quoted {
			if _, ok := c.lx.svc[t.low]; ok {
				svcAt = i
				break
			}
		}
	}
	actions := actionWords()
	if svcAt < 0 {
		for _, t := range c.toks {
			if a, ok := actions[t.low]; ok && !t.used {
				c.hint = fmt.Sprintf("%s which service? the rule planner knows: %s", a, strings.Join(KnownServices(), ", "))
				break
			}
		}
		return false
	}
	svc := c.lx.svc[c.toks[svcAt].low]
	// An action word up to three words before the service.
	for i := svcAt - 1; i >= 0 && i >= svcAt-3; i-- {
		if a, ok := actions[c.toks[i].low]; ok && !c.toks[i].used {
			c.toks[i].used, c.toks[svcAt].used = true, true
			c.useAll(setOf("service daemon unit"))
			c.setVerb("exec-service", "exec", map[string][]string{"argv": {"systemctl", a, svc}}, c.toks[i].low, c.toks[svcAt].low)
			return true
		}
	}
	if c.has(setOf("logs log journal journals")) {
		c.toks[svcAt].used = true
		c.useAll(setOf("logs log journal journals service daemon unit recent last latest"))
		c.setVerb("exec-logs", "exec", map[string][]string{"argv": {"journalctl", "-u", svc, "-n", LogLines, "--no-pager"}}, c.toks[svcAt].low, "logs")
		return true
	}
	if c.has(setOf("running active status check up alive working healthy state dead down")) {
		c.toks[svcAt].used = true
		c.useAll(setOf("running active status check up alive working healthy state dead down service daemon unit"))
		c.setVerb("exec-active", "exec", map[string][]string{"argv": {"systemctl", "is-active", svc}}, c.toks[svcAt].low, "running")
		return true
	}
	c.hint = fmt.Sprintf("what should happen to %s? say restart, start, stop, reload, \"is %s running\" or \"%s logs\"", svc, svc, svc)
	return false
}

func (c *clause) hasService() bool {
	for _, t := range c.toks {
		if _, ok := c.lx.svc[t.low]; ok && !t.used {
			return true
		}
	}
	return false
}

// ---- stage 2: node words ----

// selBuild collects the selector of one clause: factors ANDed together,
// each a choice of alternatives.
type selBuild struct {
	factors [][]selAlt
}

// selAlt is one conjunction, by rank so that it renders in a parseable order.
type selAlt struct {
	parts [4][]string // by rank
}

// addTerm adds one ANDed term found by the node rule named rule.
func (c *clause) addTerm(rule string, rank int, term string) {
	c.sel.add(rank, term)
	c.noteRule(rule)
}

func (c *clause) noteRule(rule string) {
	if !slices.Contains(c.selRules, rule) {
		c.selRules = append(c.selRules, rule)
	}
}

func (s *selBuild) empty() bool { return len(s.factors) == 0 }

func (s *selBuild) add(rank int, term string) {
	var a selAlt
	a.parts[rank] = []string{term}
	s.factors = append(s.factors, []selAlt{a})
}

// maxAlternatives bounds the OR-expansion of one selector.
const maxAlternatives = 16

func (s *selBuild) render() (string, error) {
	if len(s.factors) == 0 {
		return "all", nil
	}
	alts := []selAlt{{}}
	for _, f := range s.factors {
		var next []selAlt
		for _, a := range alts {
			for _, b := range f {
				var m selAlt
				for r := range m.parts {
					m.parts[r] = append(slices.Clone(a.parts[r]), b.parts[r]...)
				}
				next = append(next, m)
			}
		}
		if len(next) > maxAlternatives {
			return "", fmt.Errorf("too many alternatives of nodes (%d, limit %d)", len(next), maxAlternatives)
		}
		alts = next
	}
	var out []string
	for _, a := range alts {
		lits := slices.Clone(a.parts[rankLiteral])
		// A literal that starts with a bare name goes first among literals.
		sort.SliceStable(lits, func(i, j int) bool { return startsBare(lits[i]) && !startsBare(lits[j]) })
		var all []string
		all = append(all, a.parts[rankName]...)
		all = append(all, a.parts[rankOther]...)
		all = append(all, lits...)
		all = append(all, a.parts[rankCaps]...)
		out = append(out, strings.Join(all, ","))
	}
	text := strings.Join(out, "|")
	sel, err := subjects.ParseSelector(text)
	if err != nil {
		return "", fmt.Errorf("the nodes do not form a selector: %v", err)
	}
	return sel.String(), nil
}

func startsBare(lit string) bool {
	first, _, _ := strings.Cut(lit, ",")
	return first != "" && !strings.ContainsAny(first, "=<>") && !(first[0] >= '0' && first[0] <= '9')
}

func (c *clause) literalSelectors() error {
	for i := range c.toks {
		t := &c.toks[i]
		if t.used || t.quoted || !strings.ContainsAny(t.raw, "=<>") || strings.Trim(t.raw, "=<>") == "" {
			continue // bare operators belong to "load < 0.5"
		}
		sel, err := subjects.ParseSelector(t.raw)
		if err != nil {
			return fmt.Errorf("%q looks like a selector but is not one: %v", clip(t.raw), err)
		}
		t.used = true
		var f []selAlt
		for _, alt := range strings.Split(sel.String(), "|") {
			var a selAlt
			a.parts[rankLiteral] = []string{alt}
			f = append(f, a)
		}
		c.sel.factors = append(c.sel.factors, f)
		c.noteRule("selector")
	}
	return nil
}

// references finds "the ones that answered slowly" in a later step.
func (c *clause) references(prev *Step) {
	refWords := setOf("ones one them those these that which who answered responded replied answer respond reply nodes that's same")
	pick := func(which string, n int) {
		c.from = &Pick{Step: prev.ID, Which: which, N: n}
		c.useAll(refWords)
		c.noteRule(map[string]string{PickFailed: "then-failed", PickSlowest: "then-slowest", PickFastest: "then-fastest",
			PickOK: "then-ok", PickAll: "then-them"}[which])
	}
	countNear := func(m match) int {
		for _, cp := range m.caps {
			if n, err := strconv.Atoi(cp); err == nil {
				return n
			}
		}
		return DefaultPickN
	}
	for _, spec := range []string{
		"did_not|never|failed_to|could_not answer|respond|reply|answer_in_time",
		"no|without answer|reply|response",
		"failed|failing|errored|erred|unreachable|offline|silent|missing|timed_out|time_out|error|errors|down",
	} {
		if _, ok := c.take(spec); ok {
			pick(PickFailed, 0)
			return
		}
	}
	for _, dir := range []struct{ which, words string }{
		{PickSlowest, "slowest|slow|slowly|slower|laggiest|lagging|laggy"},
		{PickFastest, "fastest|fast|quickly|quick|quickest|faster|quicker"},
	} {
		for _, spec := range []string{"?the #n " + dir.words, "?the " + dir.words + " #n", "?the " + dir.words} {
			if m, ok := c.take(spec); ok {
				pick(dir.which, countNear(m))
				return
			}
		}
	}
	if _, ok := c.take("answered|responded|replied|succeeded|worked|reachable|alive|ok|okay|up|online"); ok {
		pick(PickOK, 0)
		return
	}
	if _, ok := c.take("them|those|these|the_same|same_nodes|same_ones|each_of_them"); ok {
		pick(PickAll, 0)
	}
}

func (c *clause) chevrons(keyword bool) {
	if keyword {
		for {
			m, ok := c.take("in|at|under|within|below|inside ?the zone|region|swarm|prefix|chevron|node #chev")
			if !ok {
				m, ok = c.take("zone|region|swarm|prefix|chevron|node #chev")
			}
			if !ok {
				m, ok = c.take("in|under|within|inside|below #chev")
			}
			if !ok {
				return
			}
			c.addChevron(m.end-1, m.caps[0])
		}
	}
	for i := range c.toks {
		t := &c.toks[i]
		if t.used || t.quoted {
			continue
		}
		v, ok := c.placeholder("#chev", *t)
		if !ok {
			continue
		}
		prev := ""
		if i > 0 {
			prev = c.toks[i-1].low
		}
		if !strings.Contains(t.raw, ".") && !setOf("on at to from of for and or ping scan")[prev] {
			continue
		}
		t.used = true
		c.addChevron(i, v)
	}
}

// addChevron notes a chevron prefix at token i; the vocabulary stage
// joins it with others ("zone 3 or zone 4") and ANDs it with the rest.
func (c *clause) addChevron(i int, prefix string) {
	if c.chevs == nil {
		c.chevs = map[int]string{}
	}
	c.chevs[i] = prefix
}

func (c *clause) counts() {
	nouns := nodeNouns()
	desc := "busiest|most_loaded|most_busy|hottest|heaviest|most_active"
	asc := "idlest|least_loaded|least_busy|quietest|calmest|most_idle|coolest|least_active|laziest"
	for _, o := range []struct{ order, words, rule string }{{OrderLoadDesc, desc, "busiest"}, {OrderLoadAsc, asc, "idlest"}} {
		for _, spec := range []string{"?the ?top #n " + o.words, "?the " + o.words + " #n"} {
			if m, ok := c.take(spec); ok {
				c.order, c.limit = o.order, atoi(m.caps[0])
				c.noteRule(o.rule)
				return
			}
		}
	}
	if m, ok := c.take("top #n ?by_load"); ok {
		c.order, c.limit = OrderLoadDesc, atoi(m.caps[0])
		c.noteRule("busiest")
		return
	}
	for _, o := range []struct{ order, words, rule string }{{OrderLoadDesc, desc, "busiest"}, {OrderLoadAsc, asc, "idlest"}} {
		if m, ok := c.take("?the " + o.words); ok {
			c.order, c.limit = o.order, 1
			c.noteRule(o.rule)
			// "the busiest nodes" (plural) means a few.
			for j := m.end; j < len(c.toks) && j < m.end+3; j++ {
				if w := c.toks[j].low; nouns[w] && strings.HasSuffix(w, "s") || c.isVocabPlural(w) {
					c.limit = DefaultCountN
					break
				}
			}
			return
		}
	}
	if m, ok := c.take("any|up_to|at_most|max|maximum|only|just|limit_to|no_more_than|not_more_than #n"); ok {
		c.limit = atoi(m.caps[0])
		c.noteRule("count")
		return
	}
	for i := range c.toks {
		t := c.toks[i]
		if t.used {
			continue
		}
		v, ok := c.placeholder("#n", t)
		if !ok || i+1 >= len(c.toks) {
			continue
		}
		next := c.toks[i+1].low
		if nouns[next] || c.isVocabWord(next) {
			c.toks[i].used = true
			c.limit = atoi(v)
			c.noteRule("count")
			return
		}
	}
}

func (c *clause) isVocabWord(w string) bool {
	_, ok := c.lx.lookup(w)
	return ok
}

func (c *clause) isVocabPlural(w string) bool {
	return strings.HasSuffix(w, "s") && c.isVocabWord(w)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func (c *clause) loads() {
	ops := []struct{ op, words string }{
		{"<", "under|below|beneath|<|less_than|lower_than|smaller_than|at_most_under"},
		{"<=", "<=|at_most|not_above|not_over"},
		{">", "over|above|>|more_than|greater_than|higher_than|exceeding"},
		{">=", ">=|at_least"},
		{"=", "=|of|equal_to"},
	}
	for {
		found := false
		for _, o := range ops {
			if m, ok := c.take("?with|where|whose|having|at ?a|the ?current load|loadavg|load_average ?is|per_cpu " + o.words + " #f"); ok {
				c.addTerm("load", rankOther, "load"+o.op+m.caps[0])
				found = true
			}
		}
		if !found {
			break
		}
	}
	for _, q := range []struct{ rule, term, spec string }{
		{"busy", "load>" + BusyLoad, "with|having|under|at ?a high|heavy load"},
		{"idle", "load<" + IdleLoad, "with|having|at ?a low|light load"},
		{"busy", "load>=1", "overloaded|saturated|overworked"},
		{"idle", "load<" + IdleLoad, "idle|idling|quiet|calm|unloaded|underused|lightly_loaded"},
	} {
		if _, ok := c.take(q.spec); ok {
			c.addTerm(q.rule, rankOther, q.term)
		}
	}
	for i := range c.toks {
		t := &c.toks[i]
		if t.used || !setOf("busy loaded stressed heavily-loaded")[t.low] {
			continue
		}
		if i > 0 && c.toks[i-1].low == "how" {
			continue // "how busy are …" asks for a gauge
		}
		t.used = true
		c.addTerm("busy", rankOther, "load>"+BusyLoad)
	}
}

func (c *clause) trusts() {
	if _, ok := c.take("fully|highly|very|most|completely|totally trusted"); ok {
		c.addTerm("trust", rankOther, "trust>=3")
		return
	}
	if _, ok := c.take("untrusted|not_trusted|distrusted"); ok {
		c.addTerm("trust", rankOther, "trust=0")
		return
	}
	if m, ok := c.take("?a|with trust|tier ?level|tier|score ?of ?at_least|>=|of_at_least|=|of #tier"); ok {
		c.addTerm("trust", rankOther, "trust>="+m.caps[0])
		return
	}
	if m, ok := c.take("trust ?level|tier|score above|over|>|more_than #tier"); ok {
		c.addTerm("trust", rankOther, "trust>"+m.caps[0])
		return
	}
	if _, ok := c.take("trusted|trustworthy"); ok {
		c.addTerm("trust", rankOther, "trust>=2")
	}
}

// allWords notes "everything", "all nodes": all nodes on purpose, not by
// default (which in a later step means the earlier step's nodes).
func (c *clause) allWords() {
	nouns := nodeNouns()
	for i, t := range c.toks {
		if t.used {
			continue
		}
		switch t.low {
		case "everything", "everyone", "everybody", "everywhere", "fleet", "swarm", "cluster":
			c.allWord = true
		case "all", "every", "each":
			next := ""
			if i+1 < len(c.toks) {
				next = c.toks[i+1].low
			}
			if next == "" || nouns[next] || next == "in" || next == "on" || next == "at" {
				c.allWord = true
			}
		}
	}
}

// ---- stage 3: verbs named by keywords ----

type verbRule struct {
	rule, verb string
	words      string // trigger words and "multi_word" phrases
}

func keywordRules() []verbRule {
	return []verbRule{
		{"scan", "scan", `scan scans scanning anomalies anomaly anomalous problems problem issues issue trouble faults wrong
			unhealthy findings health health_check healthcheck zombies zombie full pressure skew drift clock_skew clock_drift
			failed_units failed_services failing_units inodes inode open_ports listening_ports new_ports sanity_check`},
		{"caps", "caps", "caps capabilities capability verbs features what_can commands supported"},
		{"info", "info", `info information inventory hardware specs specifications describe details kernel kernels arch
			architecture os operating_system cores cpus interfaces nics distro distribution`},
		{"gauge", "gauge", `gauge gauges metrics metric vitals stats statistics readings measurements measure cpu processor
			mem memory ram swap disk disks storage disk_space free_space net network bandwidth traffic throughput load
			load_average loadavg usage utilization utilisation consumption resources how_busy`},
		{"status", "status", "status statuses state doing runtime condition"},
		{"ping", "ping", "ping pings pong up alive reachable reach online respond responding answer answering latency rtt round_trip connectivity awake there which who find"},
	}
}

// phraseSpec turns a rule's words into a pattern alternative list.
func phraseSpec(words string) string {
	return strings.Join(strings.Fields(words), "|")
}

func (c *clause) keywordVerbs() {
	for _, r := range keywordRules() {
		spec := phraseSpec(r.words)
		if _, ok := c.find(spec); !ok {
			continue
		}
		// Take every trigger of the verb, so none is left to look like a
		// second action.
		var taken []string
		for {
			m, ok := c.take(spec)
			if !ok {
				break
			}
			taken = append(taken, strings.Join(m.words, "_"))
		}
		switch r.verb {
		case "scan":
			c.setScan(taken)
		case "gauge":
			c.setGauge(taken)
		default:
			c.setVerb(r.rule, r.verb, nil)
		}
		for i, w := range taken {
			taken[i] = strings.ReplaceAll(w, "_", " ")
		}
		c.matched = taken
		return
	}
}

func (c *clause) setScan(taken []string) {
	topics := []struct{ check, words string }{
		{command.CheckDisk, "disk disks storage filesystem filesystems space full"},
		{command.CheckInodes, "inode inodes"},
		{command.CheckMemory, "memory mem ram pressure swap"},
		{command.CheckLoad, "load cpu cpus overload"},
		{command.CheckZombies, "zombie zombies"},
		{command.CheckSystemd, "systemd unit units service services failed_units failed_services failing_units"},
		{command.CheckPorts, "port ports open_ports listening_ports new_ports"},
		{command.CheckClock, "clock time skew drift clock_skew clock_drift ntp"},
	}
	var checks []string
	for _, tp := range topics {
		set := setOf(tp.words)
		single := setOf(strings.Join(slices.DeleteFunc(strings.Fields(tp.words), func(w string) bool { return strings.Contains(w, "_") }), " "))
		hit := slices.ContainsFunc(taken, func(w string) bool { return set[w] })
		if c.useAll(single) > 0 {
			hit = true
		}
		if hit {
			checks = append(checks, tp.check)
		}
	}
	// "full inodes" is not also about disk space.
	if slices.Contains(checks, command.CheckInodes) && !c.mentioned("disk", "disks", "storage", "space", "filesystem", "filesystems") {
		checks = slices.DeleteFunc(checks, func(s string) bool { return s == command.CheckDisk })
	}
	c.useAll(setOf("high heavy new open listening failed failing unexpected low"))
	if len(checks) == 0 {
		c.setVerb("scan", "scan", nil)
		return
	}
	c.setVerb("scan", "scan", map[string][]string{"checks": checks})
}

// mentioned reports whether any token, used or not, is one of words.
func (c *clause) mentioned(words ...string) bool {
	for _, t := range c.toks {
		if slices.Contains(words, t.low) {
			return true
		}
	}
	return false
}

func (c *clause) setGauge(taken []string) {
	metrics := map[string]string{
		"cpu": "cpu", "processor": "cpu",
		"mem": "mem", "memory": "mem", "ram": "mem", "swap": "mem",
		"disk": "disk", "disks": "disk", "storage": "disk", "disk_space": "disk", "free_space": "disk",
		"net": "net", "network": "net", "bandwidth": "net", "traffic": "net", "throughput": "net",
		"load": "load", "load_average": "load", "loadavg": "load", "how_busy": "load",
	}
	seen := map[string]bool{}
	for _, w := range taken {
		if m, ok := metrics[w]; ok {
			seen[m] = true
		}
	}
	metric := "list"
	if len(seen) == 1 {
		for m := range seen {
			metric = m
		}
	}
	c.setVerb("gauge", "gauge", map[string]string{"metric": metric})
}

// ---- stage 4: the vocabulary ----

func (c *clause) vocabulary() {
	type hit struct {
		at int
		vt vocabTerm
	}
	var hits []hit
	fill := fillers()
	for i := range c.toks {
		t := &c.toks[i]
		if t.used || t.quoted || (fill[t.low] && !c.lx.exact(t.low)) {
			continue
		}
		if vt, ok := c.lx.lookup(t.low); ok {
			t.used = true
			hits = append(hits, hit{i, vt})
		}
	}
	for i, prefix := range c.chevs {
		hits = append(hits, hit{i, vocabTerm{kind: rankOther, term: prefix, key: "chevron", rule: "chevron"}})
	}
	slices.SortFunc(hits, func(a, b hit) int { return a.at - b.at })
	// Hits joined by "or", "and" or a comma form a group; within a group
	// "or" separates alternatives, and so does "and" when a node noun
	// follows the group ("web and db nodes") or when AND is impossible (two
	// names, two values of one tag key). Adjacent words ("linux gpu
	// nodes") and separate groups are ANDed.
	const (
		linkAdj = iota // adjacent: AND
		linkAnd        // "and" or a comma: AND, or OR as said above
		linkOr
	)
	type group struct {
		hits  []hit
		links []int // links[k] joins hits[k] and hits[k+1]
	}
	var groups []group
	for k, h := range hits {
		if k > 0 {
			p := hits[k-1]
			var words []string // what stands between, but words other rules took
			for _, t := range c.toks[p.at+1 : h.at] {
				if t.low != "the" && !t.used {
					words = append(words, t.low)
				}
			}
			l := -1
			switch {
			case len(words) == 1 && words[0] == "or":
				l = linkOr
			case len(words) == 1 && words[0] == "and", len(words) == 0 && c.toks[p.at].comma:
				l = linkAnd
			case len(words) == 0:
				l = linkAdj
			}
			if l >= 0 {
				g := &groups[len(groups)-1]
				g.hits = append(g.hits, h)
				g.links = append(g.links, l)
				continue
			}
		}
		groups = append(groups, group{hits: []hit{h}})
	}
	nouns := nodeNouns()
	for _, g := range groups {
		last := g.hits[len(g.hits)-1].at
		nounAfter := last+1 < len(c.toks) && nouns[c.toks[last+1].low]
		var f []selAlt
		var cur selAlt
		var curHits []hit
		for k, h := range g.hits {
			if k > 0 {
				split := false
				switch g.links[k-1] {
				case linkOr:
					split = true
				case linkAnd:
					split = nounAfter || slices.ContainsFunc(curHits, func(x hit) bool {
						return x.vt.kind == rankName && h.vt.kind == rankName || x.vt.key != "" && x.vt.key == h.vt.key
					})
				}
				if split {
					f = append(f, cur)
					cur, curHits = selAlt{}, nil
				}
			}
			cur.parts[h.vt.kind] = append(cur.parts[h.vt.kind], h.vt.term)
			curHits = append(curHits, h)
		}
		f = append(f, cur)
		c.sel.factors = append(c.sel.factors, f)
		if len(f) > 1 {
			c.noteRule("or")
		}
		for _, h := range g.hits {
			c.noteRule(h.vt.rule)
		}
	}
}

// exact reports whether w is a vocabulary word as written (so that a
// node called "up" still counts, while "up" is otherwise a filler).
func (lx *lexicon) exact(w string) bool {
	_, a := lx.caps[w]
	_, b := lx.vals[w]
	_, d := lx.names[w]
	return a || b || d
}

// ---- stage 5: what is left ----

func (c *clause) leftovers() error {
	refused, neg, sched, strong := refusedWords(), negations(), scheduling(), strongVerbs()
	fill, nouns, actions := fillers(), nodeNouns(), actionWords()
	for _, t := range c.toks {
		if !t.used && refused[t.low] {
			return fmt.Errorf("%w: %q is not something the rule planner plans: it runs only the catalogued verbs and the service actions of its table (use `robonet run <nodes> exec -- …` for anything else)", ErrSentenceRefused, clip(t.raw))
		}
	}
	for i, t := range c.toks {
		if t.used {
			continue
		}
		switch {
		case t.quoted:
			return fmt.Errorf("quoted text %q: only a config value may be quoted", clip(t.raw))
		case neg[t.low]:
			return fmt.Errorf("%q: exclusions and negations are beyond the rule planner; name the nodes you want", t.raw)
		case sched[t.low]:
			return fmt.Errorf("%q: conditions, repeats and schedules are beyond the rule planner; it runs a plan once, now", t.raw)
		case strong[t.low] && c.verb != "":
			return fmt.Errorf("%q is a second action in one step; chain actions with \"then\" (\"ping all, then scan them\")", t.raw)
		case c.lx.svc[t.low] != "" && c.verb != "":
			return fmt.Errorf("%q: one service per step; chain them with \"then\"", t.raw)
		}
		if a, ok := actions[t.low]; ok && c.verb != "" {
			next := ""
			if i+1 < len(c.toks) {
				next = c.toks[i+1].low
			}
			if t.low == "start" && (next == "a" || next == "an" || next == "the") && c.verb != "" {
				continue // "start a scan of …"
			}
			return fmt.Errorf("%s which service? the rule planner knows: %s", a, strings.Join(KnownServices(), ", "))
		}
		if !isPlainWord(t.low) {
			return fmt.Errorf("%q: not a node, chevron, number, path or key the rule planner can place", clip(t.raw))
		}
		if fill[t.low] || c.lx.svc[t.low] != "" || actions[t.low] != "" {
			continue
		}
		// An unknown word where nodes are named is refused rather than
		// dropped, or "scan the gateways" would scan every node: after
		// on/in/at/…, before a node noun, after an article, or as the
		// object of ping, scan, gauge or describe.
		before := c.prevWord(i)
		article := i > 0 && setOf("the all every each those these my our")[c.toks[i-1].low]
		if c.verb != "" && (setOf("on in at under across within from ping scan gauge describe")[before] || article ||
			(i+1 < len(c.toks) && nouns[c.toks[i+1].low])) {
			return fmt.Errorf("which nodes are %q? it is no capability, tag, node name, OS or chevron the swarm declares%s", clip(t.raw), c.lx.known())
		}
	}
	return nil
}

// prevWord is the nearest earlier word that is not an article.
func (c *clause) prevWord(i int) string {
	for j := i - 1; j >= 0; j-- {
		switch c.toks[j].low {
		case "the", "a", "an", "all", "every", "each", "any", "some", "my", "our", "those", "these":
			continue
		}
		return c.toks[j].low
	}
	return ""
}

func isPlainWord(w string) bool {
	for _, r := range w {
		if !unicode.IsLetter(r) && r != '-' {
			return false
		}
	}
	return w != "" && w[0] != '-'
}

// known lists the vocabulary for an error message.
func (lx *lexicon) known() string {
	list := func(m map[string]string) string {
		var out []string
		for _, v := range m {
			out = append(out, v)
		}
		sort.Strings(out)
		if len(out) > 12 {
			out = append(out[:12], "…")
		}
		return strings.Join(out, ", ")
	}
	var vals []string
	for _, kvs := range lx.vals {
		vals = append(vals, kvs...)
	}
	sort.Strings(vals)
	if len(vals) > 12 {
		vals = append(vals[:12], "…")
	}
	return fmt.Sprintf(" (caps: %s; tags: %s; names: %s)", orNone(list(lx.caps)), orNone(strings.Join(vals, ", ")), orNone(list(lx.names)))
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// ---- not understood: suggestions ----

func notUnderstood(sentence string, err error) error {
	if errors.Is(err, ErrSentenceRefused) || errors.Is(err, ErrBadSentence) {
		return err
	}
	sug := Suggest(sentence, 3)
	q := make([]string, len(sug))
	for i, s := range sug {
		q[i] = strconv.Quote(s)
	}
	return fmt.Errorf("%w: %q: %v. Nearest phrasings it knows: %s", ErrNotUnderstood, clip(sentence), err, strings.Join(q, "; "))
}

// Suggest returns the n examples of the phrasing table nearest to
// sentence: most words in common (Jaccard over lower-case words), then
// smallest edit distance, then table order.
func Suggest(sentence string, n int) []string {
	stop, actions, svc := setOf("the a an of on in to for from is are"), actionWords(), knownServices()
	words := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, t := range tokenize(strings.ToLower(s)) {
			w := t.low
			if a, ok := actions[w]; ok {
				w = a // "bounce" is "restart"
			} else if _, ok := svc[w]; ok {
				w = "<service>" // any service is like the example's
			}
			if w != "" && !stop[w] {
				m[w] = true
				for _, sg := range singulars(w)[1:] {
					m[sg] = true
				}
			}
		}
		return m
	}
	in := words(sentence)
	type cand struct {
		ex   string
		sim  float64
		dist int
		idx  int
	}
	var cs []cand
	seen := map[string]bool{}
	for i, ph := range Phrasings() {
		if seen[ph.Example] {
			continue
		}
		seen[ph.Example] = true
		ex := words(ph.Example + " " + ph.Pattern)
		inter, union := 0, len(ex)
		for w := range in {
			if ex[w] {
				inter++
			} else {
				union++
			}
		}
		sim := 0.0
		if union > 0 {
			sim = float64(inter) / float64(union)
		}
		cs = append(cs, cand{ph.Example, sim, editDistance(strings.ToLower(sentence), strings.ToLower(ph.Example)), i})
	}
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].sim != cs[j].sim {
			return cs[i].sim > cs[j].sim
		}
		if cs[i].dist != cs[j].dist {
			return cs[i].dist < cs[j].dist
		}
		return cs[i].idx < cs[j].idx
	})
	var out []string
	for _, c := range cs[:min(n, len(cs))] {
		out = append(out, c.ex)
	}
	return out
}

// editDistance is the Levenshtein distance between a and b in bytes,
// capped in effort by the sentence limit.
func editDistance(a, b string) int {
	if len(a) > MaxSentence {
		a = a[:MaxSentence]
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
