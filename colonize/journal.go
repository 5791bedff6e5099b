package colonize

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// journal is colonize's record on a target (JournalPath, one line of JSON,
// replaced atomically). It lists every path colonize created, so
// uncolonize removes exactly those and the host is left as it was, and it
// carries the state of a run that has not finished, so a failure rolls back
// and a rerun after a kill converges.
type journal struct {
	Version int      `json:"version"`
	Created []string `json:"created"`          // paths colonize made (that did not exist before it), in order
	Service string   `json:"service"`          // "systemd" or "fallback"
	Pubkey  string   `json:"pubkey,omitempty"` // the node's key
	Updated string   `json:"updated"`
	Run     *runLog  `json:"run,omitempty"` // an unfinished run
}

// runLog is what a run must undo when its node does not come up.
type runLog struct {
	Started   string   `json:"started"`
	Created   []string `json:"created,omitempty"`    // made in this run: removed on rollback
	Saved     []string `json:"saved,omitempty"`      // previous versions kept in PrevDir: put back on rollback
	WasActive bool     `json:"was_active,omitempty"` // the service ran before the run
	NewKey    string   `json:"new_key,omitempty"`    // identity made in this run: revoked on rollback
}

func parseJournal(s string) (*journal, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var j journal
	if err := json.Unmarshal([]byte(s), &j); err != nil {
		return nil, fmt.Errorf("journal %s: %v", JournalPath, err)
	}
	if j.Version != 1 {
		return nil, fmt.Errorf("journal %s: version %d, this robonet reads 1", JournalPath, j.Version)
	}
	paths := append(slices.Clone(j.Created), j.runCreated()...)
	if j.Run != nil {
		paths = append(paths, j.Run.Saved...)
	}
	for _, p := range paths {
		if !managed(p) {
			return nil, fmt.Errorf("journal %s names %q, which colonize never creates: refusing to act on it", JournalPath, p)
		}
	}
	return &j, nil
}

func (j *journal) runCreated() []string {
	if j.Run == nil {
		return nil
	}
	return j.Run.Created
}

// managed reports whether colonize may create (and so remove) path: a
// journal is read from the target, and whoever controls the target must
// not be able to make uncolonize delete anything else.
func managed(path string) bool {
	switch path {
	case BinaryPath, ConfigDir, ConfigPath, TokenPath, DataDir, StateDir, UnitPath, LogPath, PidPath:
		return true
	}
	return false
}

func (j *journal) encode(now time.Time) []byte {
	j.Version = 1
	j.Updated = now.UTC().Format(time.RFC3339)
	b, _ := json.Marshal(j)
	return append(b, '\n')
}

// note records that path is about to be created by this run.
func (j *journal) note(path string) {
	if !slices.Contains(j.Created, path) {
		j.Created = append(j.Created, path)
	}
	if j.Run != nil && !slices.Contains(j.Run.Created, path) {
		j.Run.Created = append(j.Run.Created, path)
	}
}

// prevName is where the previous version of path waits during a run.
func prevName(path string) string {
	return PrevDir + "/" + strings.ReplaceAll(strings.TrimPrefix(path, "/"), "/", "_")
}

// writeJournalScript writes a journal of n bytes from stdin atomically,
// making the state directory first. A client killed while sending leaves
// a short temporary file and no journal, never a cut one: the size is
// checked before the move. (The directories it made are then recognised
// as colonize's by the next preflight: see parsePreflight.)
func writeJournalScript(n int) string {
	return fmt.Sprintf(`set -e; umask 077; mkdir -p %s; t=%s.tmp.$$; head -c %d > "$t"; [ "$(wc -c < "$t" | tr -d ' ')" -eq %d ]; mv -f "$t" %s`,
		PrevDir, JournalPath, n, n, JournalPath)
}

// saveScript keeps the current version of path for a rollback, once per
// run: a rerun after a kill keeps what the killed run saved, which is the
// last version that worked.
func saveScript(path string) string {
	p, q := quote(path), quote(prevName(path))
	return fmt.Sprintf(`if [ -e %s ] && [ ! -e %s ]; then cp -p %s %s.tmp && mv -f %s.tmp %s; fi`, p, q, p, q, q, q)
}

// removeScript removes the given managed paths, deepest first, tolerating
// those already gone. Only managed paths ever reach it.
func removeScript(paths []string) string {
	var b strings.Builder
	b.WriteString("set -e")
	ps := slices.Clone(paths)
	slices.SortFunc(ps, func(a, b string) int { return len(b) - len(a) })
	for _, p := range ps {
		if managed(p) {
			fmt.Fprintf(&b, "; rm -rf %s", quote(p))
		}
	}
	return b.String()
}
