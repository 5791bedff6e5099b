package intents

import (
	"fmt"
	"strings"
	"testing"

	"github.com/robonet-mesh/robonet/command"
)

// Many findings of one check are one line, so a node's other checks stay
// in the summary (CI saw seven new-port findings per node push the
// Sentinel's finding out of it).
func TestFindingLinesGroupByCheck(t *testing.T) {
	var fs []command.Finding
	for i := range 7 {
		fs = append(fs, command.Finding{Check: command.CheckPorts, Severity: command.SeverityWarning,
			Message: fmt.Sprintf("listening on tcp/127.0.0.1:%d, not at baseline", 25000+i)})
	}
	fs = append(fs, command.Finding{Check: "sentinel", Severity: command.SeverityWarning, Message: "cpu 100% against a baseline of 20%"},
		command.Finding{Check: command.CheckDisk, Severity: command.SeverityCritical, Message: "/ at 97%"})
	got := findingLines(fs)
	want := []string{
		"    critical disk: / at 97%",
		"    warning ports: listening on tcp/127.0.0.1:25000, not at baseline (and 6 more)",
		"    warning sentinel: cpu 100% against a baseline of 20%",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("findingLines:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
