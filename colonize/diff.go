package colonize

import (
	"fmt"
	"strings"
)

// Diff is a line diff of a file's old and new content, in unified form
// without hunks (the files colonize writes are short): "-" old, "+" new,
// " " both.
func Diff(path, old, new string) string {
	a, b := lines(old), lines(new)
	// Longest common subsequence, by dynamic programming: configs and
	// units are tens of lines.
	n, m := len(a), len(b)
	if n*m > 1<<20 {
		return fmt.Sprintf("--- %s\n+++ %s\n(%d lines replaced by %d)\n", path, path, n, m)
	}
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	oldName := path
	if old == "" {
		oldName = "/dev/null"
	}
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", oldName, path)
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			out.WriteString(" " + a[i] + "\n")
			i++
			j++
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			out.WriteString("-" + a[i] + "\n")
			i++
		default:
			out.WriteString("+" + b[j] + "\n")
			j++
		}
	}
	return out.String()
}

func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}
