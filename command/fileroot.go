package command

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrOutsideRoots is wrapped by a file error for a path outside the node's
// file roots (or inside a protected directory).
var ErrOutsideRoots = errors.New("outside the file roots")

// fileRoot is one directory file may read and write under: its path as
// configured and with symlinks resolved.
type fileRoot struct {
	dir  string // as configured (clean, absolute)
	real string // symlinks resolved
}

// newFileRoots checks the configured roots: each an existing directory that
// is not, and does not contain, a protected directory (the data dir, the
// store). A root inside a protected directory is fine: every access goes
// through os.Root, which no path or symlink below the root can leave.
func newFileRoots(dirs, protected []string) ([]fileRoot, error) {
	var prot []string
	for _, p := range protected {
		if p == "" {
			continue
		}
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("%w: protected directory %q: not absolute", ErrOptions, p)
		}
		prot = append(prot, filepath.Clean(p))
		if r, err := filepath.EvalSymlinks(p); err == nil {
			prot = append(prot, r)
		}
	}
	var out []fileRoot
	for _, d := range dirs {
		if d == "" || !filepath.IsAbs(d) || strings.IndexByte(d, 0) >= 0 {
			return nil, fmt.Errorf("%w: file root %q: want an absolute directory", ErrOptions, d)
		}
		d = filepath.Clean(d)
		real, err := filepath.EvalSymlinks(d)
		if err != nil {
			return nil, fmt.Errorf("%w: file root %s: %v", ErrOptions, d, err)
		}
		fi, err := os.Stat(real)
		if err != nil {
			return nil, fmt.Errorf("%w: file root %s: %v", ErrOptions, d, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("%w: file root %s is not a directory", ErrOptions, d)
		}
		for _, p := range prot {
			if within(p, real) || within(p, d) {
				return nil, fmt.Errorf("%w: file root %s contains %s, which holds the node's keys and store; choose directories that do not", ErrOptions, d, p)
			}
		}
		out = append(out, fileRoot{dir: d, real: real})
	}
	return out, nil
}

// within reports whether path is dir or below it (both clean, absolute).
func within(path, dir string) bool {
	if dir == "/" {
		return true
	}
	return path == dir || strings.HasPrefix(path, dir+string(filepath.Separator))
}

// rootNames lists the roots for error messages.
func (c *Catalogue) rootNames() string {
	if len(c.roots) == 0 {
		return "none configured"
	}
	names := make([]string, len(c.roots))
	for i, r := range c.roots {
		names[i] = r.dir
	}
	return strings.Join(names, ", ")
}

// confine finds the root that holds path (a clean absolute path) and opens
// it, returning the root and path's name relative to it. The path is matched
// as written and, failing that, with the symlinks of its directory resolved;
// the access itself then goes through os.Root, so neither "..", a symlink
// nor a rename race can leave the root.
func (c *Catalogue) confine(path string) (*os.Root, string, error) {
	try := []string{path}
	if real, err := filepath.EvalSymlinks(filepath.Dir(path)); err == nil {
		try = append(try, filepath.Join(real, filepath.Base(path)))
	}
	for _, p := range try {
		for _, r := range c.roots {
			for _, base := range []string{r.dir, r.real} {
				if !within(p, base) {
					continue
				}
				rel, err := filepath.Rel(base, p)
				if err != nil {
					continue
				}
				root, err := os.OpenRoot(r.real)
				if err != nil {
					return nil, "", localErr(r.dir, err)
				}
				return root, rel, nil
			}
		}
	}
	return nil, "", fmt.Errorf("%w: %s is %w (%s); start the node with --file-root to allow another directory",
		ErrBadArgs, path, ErrOutsideRoots, c.rootNames())
}

// rootErr names an error from an access through os.Root: one that tried to
// leave the root is reported as outside the roots.
func (c *Catalogue) rootErr(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "escapes from parent") {
		return fmt.Errorf("%w: %s resolves %w (%s)", ErrBadArgs, path, ErrOutsideRoots, c.rootNames())
	}
	return localErr(path, err)
}
