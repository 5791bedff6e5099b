package node

import (
	"fmt"
	"os"
	"path/filepath"
)

// FilesDir is the file verb's default root inside the data dir.
const FilesDir = "files"

// fileRoots returns the file verb's roots: the configured ones, or
// <data>/files, created when missing.
func (n *Node) fileRoots() ([]string, error) {
	if len(n.opts.FileRoots) > 0 {
		return n.opts.FileRoots, nil
	}
	dir := filepath.Join(n.opts.DataDir, FilesDir)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("file root %s: %w", dir, err)
	}
	return []string{dir}, nil
}

// FileRoots returns the directories the node's file verb works under
// (valid after Start).
func (n *Node) FileRoots() []string {
	roots, _ := n.fileRoots()
	return roots
}
