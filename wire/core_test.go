package wire

import "testing"

func TestCoreStatusLiveCountsMembersUp(t *testing.T) {
	st := CoreStatus{Size: 3, Members: []CoreMember{{Server: "a", Up: true}, {Server: "b"}, {Server: "c", Up: true}}}
	if got := st.Live(); got != 2 {
		t.Fatalf("Live() = %d, want 2", got)
	}
}
