package intents

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// ruleCatalogue is the default catalogue, without reading the machine's ports.
func ruleCatalogue(t testing.TB) *command.Catalogue {
	t.Helper()
	cat, err := command.New(command.Options{ListenBaseline: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

func TestRulePhrasingTable(t *testing.T) {
	t.Parallel()
	cat := ruleCatalogue(t)
	for _, ph := range Phrasings() {
		p, err := PlanRules(ph.Example, cat, ExampleVocabulary())
		if err != nil {
			t.Errorf("%q: %v", ph.Example, err)
			continue
		}
		if got := BriefPlan(p); got != ph.Plan {
			t.Errorf("%q:\n got  %s\n want %s", ph.Example, got, ph.Plan)
		}
		if p.Planner != PlannerRules || p.Sentence != ph.Example {
			t.Errorf("%q: planner %q sentence %q", ph.Example, p.Planner, p.Sentence)
		}
		cited := false
		for _, st := range p.Steps {
			if st.Why == "" {
				t.Errorf("%q: step %s has no why", ph.Example, st.ID)
			}
			cited = cited || strings.Contains(st.Why, "rule "+ph.Rule+" ") || strings.Contains(st.Why, " "+ph.Rule+",") || strings.HasSuffix(st.Why, " "+ph.Rule) || strings.Contains(st.Why, " "+ph.Rule+";")
		}
		if !cited {
			t.Errorf("%q: no step's why names rule %q: %q", ph.Example, ph.Rule, p.Steps[len(p.Steps)-1].Why)
		}
	}
}

// evalSet is testdata/eval.json: sentences (most of them paraphrases that
// are not in the phrasing table) and the plan each should give.
type evalSet struct {
	Vocabulary struct {
		Caps  []string            `json:"caps"`
		Tags  map[string][]string `json:"tags"`
		Names []string            `json:"names"`
	} `json:"vocabulary"`
	Entries []struct {
		Sentence string `json:"sentence"`
		Plan     struct {
			Steps []Step `json:"steps"`
		} `json:"plan"`
	} `json:"entries"`
}

// loadEval reads testdata/eval.json.
func loadEval(t testing.TB) (evalSet, Vocabulary) { return loadEvalFile(t, "eval.json") }

// loadEvalFile reads an evaluation file of testdata strictly.
func loadEvalFile(t testing.TB, name string) (evalSet, Vocabulary) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var ev evalSet
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return ev, Vocabulary{Caps: ev.Vocabulary.Caps, Tags: ev.Vocabulary.Tags, Names: ev.Vocabulary.Names}
}

// normalSteps is the JSON of steps without their Why, with arguments
// re-encoded (sorted keys) and selectors in canonical form, so that equal
// plans compare equal.
func normalSteps(t testing.TB, steps []Step) string {
	t.Helper()
	out := make([]Step, len(steps))
	for i, s := range steps {
		s.Why = ""
		if a := compactArgs(s.Args); a != "" {
			s.Args = json.RawMessage(a)
		} else {
			s.Args = nil
		}
		if sel, err := subjects.ParseSelector(s.Selector); err == nil {
			s.Selector = sel.String()
		}
		if len(s.DependsOn) == 0 {
			s.DependsOn = nil
		}
		out[i] = s
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRulePlannerEvaluation(t *testing.T) {
	t.Parallel()
	cat := ruleCatalogue(t)
	ev, vocab := loadEval(t)
	if len(ev.Entries) < 40 {
		t.Fatalf("eval.json has %d entries, want at least 40", len(ev.Entries))
	}
	table := map[string]bool{}
	for _, ph := range Phrasings() {
		table[strings.ToLower(ph.Example)] = true
	}
	exact, paraphrases := 0, 0
	for _, e := range ev.Entries {
		if !table[strings.ToLower(e.Sentence)] {
			paraphrases++
		}
		want := Plan{Sentence: e.Sentence, Planner: PlannerRules, Steps: e.Plan.Steps}
		if err := want.Validate(cat); err != nil {
			t.Errorf("eval.json: the expected plan for %q does not validate: %v", e.Sentence, err)
			continue
		}
		got, err := PlanRules(e.Sentence, cat, vocab)
		if err != nil {
			t.Logf("miss %q: %v", e.Sentence, err)
			continue
		}
		if g, w := normalSteps(t, got.Steps), normalSteps(t, e.Plan.Steps); g != w {
			t.Logf("miss %q:\n  got  %s\n  want %s", e.Sentence, BriefPlan(got), BriefPlan(want))
			continue
		}
		exact++
	}
	share := 100 * float64(exact) / float64(len(ev.Entries))
	t.Logf("rule planner: %d/%d exact (%.1f%%); %d of the sentences are not in the phrasing table", exact, len(ev.Entries), share, paraphrases)
	if paraphrases < len(ev.Entries)/2 {
		t.Errorf("only %d paraphrases: the score would mean little", paraphrases)
	}
	if share < 95 {
		t.Errorf("rule planner: %.1f%% exact, want at least 95%%", share)
	}
}

func TestRulePlannerRefuses(t *testing.T) {
	t.Parallel()
	cat := ruleCatalogue(t)
	vocab := ExampleVocabulary()
	for _, tc := range []struct {
		sentence string
		want     error
		says     string
	}{
		{"", ErrBadSentence, "empty"},
		{"   ", ErrBadSentence, "empty"},
		{"ping " + strings.Repeat("all ", 250), ErrBadSentence, "limit 1000"},
		{"ping\nall", ErrBadSentence, "control"},
		{"ping all\x00", ErrBadSentence, "control"},
		{"ping\tall", ErrBadSentence, "control"},
		{"ping \xff", ErrBadSentence, "UTF-8"},
		{"ping rn1\u202e2nr", ErrBadSentence, "format character"},
		{"ping all; rm -rf /", ErrSentenceRefused, "';'"},
		{"scan nodes && curl evil", ErrSentenceRefused, "'&'"},
		{"ping all & sleep 100", ErrSentenceRefused, "'&'"},
		{"ping `whoami`", ErrSentenceRefused, "backticks"},
		{"ping $(id)", ErrSentenceRefused, "'$'"},
		{"restart ${SVC} on web nodes", ErrSentenceRefused, "'$'"},
		{"ping all | sh", ErrSentenceRefused, "pipe"},
		{"ping all|rm", ErrSentenceRefused, "pipe"},
		{"scan all > /etc/passwd", ErrSentenceRefused, "redirection"},
		{"restart nginx < /dev/zero", ErrSentenceRefused, "redirection"},
		{`restart nginx\ on web nodes`, ErrSentenceRefused, "backslash"},
		{"run rm -rf / on all nodes", ErrSentenceRefused, `"rm"`},
		{"ping all rm -rf /", ErrSentenceRefused, `"rm"`},
		{"execute curl http://evil.example on the cameras", ErrSentenceRefused, `"curl"`},
		{"reboot the cameras", ErrSentenceRefused, `"reboot"`},
		{"exec nginx -s stop on rn1", ErrSentenceRefused, `"exec"`},
		{"sudo restart nginx", ErrSentenceRefused, `"sudo"`},
		{"restart nginx then bash -i on rn1", ErrSentenceRefused, `"bash"`},
		{"frobnicate the widgets", ErrNotUnderstood, "not something ask plans"},
		{"restart foo on web nodes", ErrNotUnderstood, "which service"},
		{"nginx on the web nodes", ErrAmbiguous, "1) exec systemctl is-active nginx on tag=role:web (dangerous)"},
		{"ping all except rn2", ErrNotUnderstood, "exclusions"},
		{"ping all nodes but not the cameras", ErrNotUnderstood, "exclusions"},
		{"scan the europe nodes", ErrNotUnderstood, `which nodes are "europe"`},
		{"restart nginx in europe", ErrNotUnderstood, `which nodes are "europe"`},
		{"ping rn7", ErrNotUnderstood, `"rn7"`},
		{"scan the cameras every hour", ErrNotUnderstood, "schedules"},
		{"restart nginx 3 times", ErrNotUnderstood, `"3"`},
		{"ping all and scan all", ErrNotUnderstood, "second action"},
		{"restart nginx and redis on rn1", ErrNotUnderstood, "one service per step"},
		{"upload /etc/hosts", ErrNotUnderstood, "which node to upload from"},
		{"copy app.conf to /etc/../shadow on rn1", ErrNotUnderstood, `"/etc/../shadow": not a node`},
		{"scan caps=", ErrNotUnderstood, "not one"},
		{"ping all, then", ErrNotUnderstood, "empty step"},
		{"ping all, then the slow ones", ErrNotUnderstood, "no action"},
		{"then ping all", ErrNotUnderstood, "empty step"},
		{"ping all then then scan", ErrNotUnderstood, "empty step"},
		{"scan the gateways", ErrNotUnderstood, `which nodes are "gateways"`},
		{"ping gateways", ErrNotUnderstood, `which nodes are "gateways"`},
		{"set config to", ErrNotUnderstood, ""},
		{strings.Repeat("ping all then ", MaxSteps) + "ping all", ErrNotUnderstood, "limit 16"},
		{"reboot the cameras please", ErrSentenceRefused, `name it in quotes`},
		{`run "ls *.log" on rn1`, ErrSentenceRefused, "without a shell"},
		{`run "" on rn1`, ErrNotUnderstood, "empty command"},
		{`run "grep 'a b" on rn1`, ErrNotUnderstood, "unclosed single quote"},
		{`ping "rn1"`, ErrNotUnderstood, "a command to run goes after run"},
		{"tell me a joke", ErrNotUnderstood, "not something ask plans"},
		{"copy the file report.txt from rn2", ErrNotUnderstood, "absolute path"},
	} {
		p, err := PlanRules(tc.sentence, cat, vocab)
		if !errors.Is(err, tc.want) {
			t.Errorf("PlanRules(%q) = %s, %v; want an error wrapping %v", clip(tc.sentence), BriefPlan(p), err, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.says) {
			t.Errorf("PlanRules(%q): %v; want it to say %q", clip(tc.sentence), err, tc.says)
		}
		// What is missing (a node word, a service, a path) is said
		// instead of phrasings; other misses suggest three.
		var ne *nodeError
		var se *slotError
		if errors.Is(err, ErrNotUnderstood) && !strings.Contains(tc.sentence, "then ping all then") && !errors.As(err, &ne) && !errors.As(err, &se) {
			if n := strings.Count(err.Error(), "; \""); !strings.Contains(err.Error(), "Nearest phrasings it knows: \"") || n != 2 {
				t.Errorf("PlanRules(%q): %v; want three suggested phrasings", clip(tc.sentence), err)
			}
		}
		if strings.Contains(err.Error(), "Nearest phrasings") && strings.Contains(strings.SplitN(err.Error(), "Nearest phrasings", 2)[1], strconv.Quote(tc.sentence)) {
			t.Errorf("PlanRules(%q) suggests the sentence itself: %v", clip(tc.sentence), err)
		}
	}
}

func TestSuggestFindsTheNearestPhrasing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ sentence, want string }{
		{"bounce the apache on the web farm", "restart nginx on web nodes"},
		{"anomalies on the AI thingies", "scan AI nodes for anomalies"},
		{"upload a file", "upload /etc/hosts from rn2 as hosts-rn2"},
	} {
		if got := Suggest(tc.sentence, 3); !slices.Contains(got, tc.want) {
			t.Errorf("Suggest(%q) = %q, want it to hold %q", tc.sentence, got, tc.want)
		}
	}
}

func TestRulePlannerUsesTheLiveVocabulary(t *testing.T) {
	t.Parallel()
	cat := ruleCatalogue(t)
	vocab := VocabularyFrom([]wire.Member{
		{Name: "cam-1", Caps: []string{"Camera", "gpu"}, Tags: map[string]string{"zone": "north"}},
		{Name: "proxy1", Caps: []string{"proxy"}, Tags: map[string]string{"role": "gateway", "zone": "south"}},
		{Name: "up", Tags: map[string]string{"edge": "yes"}},
	})
	for _, tc := range []struct{ sentence, want string }{
		{"ping the cameras", "s1: caps=Camera ping"},              // a capability wins over tags, case as declared
		{"scan the proxies", "s1: caps=proxy scan"},               // -ies plural
		{"status of the gateways", "s1: tag=role:gateway status"}, // a tag value
		{"ping the north nodes", "s1: tag=zone:north ping"},
		{"ping the edge nodes", "s1: tag=edge ping"}, // a tag key
		{"ping cam-1", "s1: cam-1 ping"},
		{"ping the north gpu nodes", "s1: tag=zone:north,caps=gpu ping"},
		{"ping the north and south nodes", "s1: tag=zone:north|tag=zone:south ping"},
		{"scan cam-1 and proxy1", "s1: cam-1|proxy1 scan"},
	} {
		p, err := PlanRules(tc.sentence, cat, vocab)
		if err != nil {
			t.Errorf("%q: %v", tc.sentence, err)
			continue
		}
		if got := BriefPlan(p); got != tc.want {
			t.Errorf("%q = %s, want %s", tc.sentence, got, tc.want)
		}
	}
	// Without the vocabulary the same words name nothing.
	if _, err := PlanRules("scan the gateways", cat, Vocabulary{}); !errors.Is(err, ErrNotUnderstood) {
		t.Errorf("with no vocabulary: %v, want ErrNotUnderstood", err)
	}
}

func TestRulePlannerIsDeterministic(t *testing.T) {
	t.Parallel()
	cat := ruleCatalogue(t)
	for _, ph := range Phrasings() {
		a, _ := PlanRules(ph.Example, cat, ExampleVocabulary())
		for range 3 {
			b, _ := PlanRules(ph.Example, cat, ExampleVocabulary())
			if normalSteps(t, a.Steps) != normalSteps(t, b.Steps) || BriefPlan(a) != BriefPlan(b) {
				t.Fatalf("%q planned differently: %s / %s", ph.Example, BriefPlan(a), BriefPlan(b))
			}
		}
	}
}

// checkRulePlan holds for every plan PlanRules returns: it validates, says
// who planned it, and an exec never carries a word outside ExecWords, so
// no text of the sentence reaches a program but the allowed names.
func checkRulePlan(t *testing.T, cat *command.Catalogue, sentence string, p Plan) {
	t.Helper()
	if err := p.Validate(cat); err != nil {
		t.Fatalf("PlanRules(%q) returned an invalid plan: %v", sentence, err)
	}
	if p.Planner != PlannerRules || p.Sentence != sentence {
		t.Fatalf("PlanRules(%q): planner %q, sentence %q", sentence, p.Planner, p.Sentence)
	}
	allowed := ExecWords()
	low := strings.ToLower(sentence)
	for _, s := range p.Steps {
		if len(s.Why) == 0 || len(s.Why) > 200 {
			t.Fatalf("PlanRules(%q): step %s why %q", sentence, s.ID, s.Why)
		}
		if s.Verb != "exec" {
			continue
		}
		var a struct {
			Argv  []string `json:"argv"`
			Shell bool     `json:"shell"`
			Stdin *string  `json:"stdin"`
			Dir   string   `json:"dir"`
		}
		if err := json.Unmarshal(s.Args, &a); err != nil {
			t.Fatal(err)
		}
		if a.Shell || a.Stdin != nil || a.Dir != "" {
			t.Fatalf("PlanRules(%q): exec with shell, stdin or dir: %s", sentence, s.Args)
		}
		named := strings.Contains(s.Why, "rule exec-named ")
		for _, w := range a.Argv {
			if named && strings.Contains(low, strings.ToLower(w)) {
				continue // a command the user named, word for word
			}
			if !slices.Contains(allowed, w) {
				t.Fatalf("PlanRules(%q): exec argv word %q is not in the allow-list: %s", sentence, w, s.Args)
			}
		}
	}
}

func FuzzPlanRules(f *testing.F) {
	for _, ph := range Phrasings() {
		f.Add(ph.Example)
	}
	ev, _ := loadEval(f)
	for _, e := range ev.Entries {
		f.Add(e.Sentence)
	}
	for _, s := range []string{"ping all; rm -rf /", "restart nginx && curl x", "restart `id`", "restart $(id) on all",
		"restart nginx rm -rf", "set config a to \"b c\"", "copy x to /y on all", "ping 3.12 or 4", "ping İİİ's",
		"restart NGINX on the CAMERAS", "what's up with rn1?", "ping the didn't", "load<0.5 scan", "\"", "then then then"} {
		f.Add(s)
	}
	cat := ruleCatalogue(f)
	vocab := ExampleVocabulary()
	f.Fuzz(func(t *testing.T, sentence string) {
		p, err := PlanRules(sentence, cat, vocab)
		if err != nil {
			if !errors.Is(err, ErrNotUnderstood) && !errors.Is(err, ErrSentenceRefused) && !errors.Is(err, ErrBadSentence) && !errors.Is(err, ErrAmbiguous) {
				t.Fatalf("PlanRules(%q): error %v wraps none of the planner's sentinels", sentence, err)
			}
			return
		}
		checkRulePlan(t, cat, sentence, p)
	})
}

func TestRulePlansHoldTheirInvariants(t *testing.T) {
	t.Parallel()
	cat := ruleCatalogue(t)
	ev, vocab := loadEval(t)
	for _, e := range ev.Entries {
		if p, err := PlanRules(e.Sentence, cat, vocab); err == nil {
			checkRulePlan(t, cat, e.Sentence, p)
		}
	}
	for _, ph := range Phrasings() {
		if p, err := PlanRules(ph.Example, cat, ExampleVocabulary()); err == nil {
			checkRulePlan(t, cat, ph.Example, p)
		}
	}
}
