package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/robonet-mesh/robonet/intents"
)

// An ambiguous sentence is a 422 whose body lists the readings, each with
// a plan the page can send back; other planner errors keep their codes.
func TestAskPlannerErrorsMapToCodes(t *testing.T) {
	amb := &intents.AmbiguousError{Sentence: "any full disks?", Reason: "the two best readings are close (0.55, 0.42)",
		Readings: []intents.Reading{
			{Plan: intents.Plan{Sentence: "any full disks?", Planner: intents.PlannerRules, Steps: []intents.Step{{ID: "s1", Selector: "all", Verb: "scan"}}}, Confidence: 0.55, Label: "scan on all (read)"},
			{Plan: intents.Plan{Sentence: "any full disks?", Planner: intents.PlannerRules, Steps: []intents.Step{{ID: "s1", Selector: "all", Verb: "gauge"}}}, Confidence: 0.42, Label: "gauge on all (read)"},
		}}
	ae := meshError(fmt.Errorf("planner: %w", amb))
	if ae.Status != http.StatusUnprocessableEntity || ae.Code != CodeAmbiguous || len(ae.Readings) != 2 {
		t.Fatalf("ambiguous: %+v", ae)
	}
	b, _ := json.Marshal(ae)
	var body struct {
		Code     string
		Readings []struct {
			Plan       intents.Plan
			Confidence float64
			Label      string
		}
	}
	if err := json.Unmarshal(b, &body); err != nil || body.Code != "ambiguous" || body.Readings[1].Plan.Steps[0].Verb != "gauge" {
		t.Fatalf("body %s: %v", b, err)
	}
	for err, code := range map[error]string{
		fmt.Errorf("x: %w", intents.ErrNotUnderstood):   CodeNotUnderstood,
		fmt.Errorf("x: %w", intents.ErrSentenceRefused): CodeRefused,
		fmt.Errorf("x: %w", intents.ErrBadSentence):     CodeBadRequest,
	} {
		if got := meshError(err); got.Code != code || len(got.Readings) != 0 {
			t.Errorf("%v: %+v, want %s", err, got, code)
		}
	}
}
