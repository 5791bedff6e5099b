package command

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/robonet-mesh/robonet/wire"
)

// FileStore is the node's view of the rn_files object store, through which
// the file verb moves files. Implementations must be safe for concurrent use.
// Digests are lower-case hex SHA-256.
type FileStore interface {
	// Put stores everything read from r under name, replacing an object of
	// that name, and returns the digest and size of what it stored. When r
	// returns an error, Put returns it and stores nothing.
	Put(ctx context.Context, name string, r io.Reader) (sha256 string, size int64, err error)
	// Get writes the object stored under name to w and returns the digest
	// and size the store recorded when the object was put (not recomputed
	// from what it wrote: the caller compares the two). An unknown name
	// returns an error wrapping ErrNotFound.
	Get(ctx context.Context, name string, w io.Writer) (sha256 string, size int64, err error)
}

// ConfigStore is the node's view of the rn_config bucket. Implementations
// must be safe for concurrent use.
type ConfigStore interface {
	// Get returns the value stored under key and its revision. An unknown
	// key returns an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) (value []byte, revision uint64, err error)
	// Set stores value under key and returns the new revision.
	Set(ctx context.Context, key string, value []byte) (revision uint64, err error)
}

// FileReply is the output of file.
type FileReply struct {
	Op     string `json:"op"`
	Name   string `json:"name"`
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ConfigReply is the output of config.
type ConfigReply struct {
	Op       string `json:"op"`
	Key      string `json:"key"`
	Value    string `json:"value"` // bytes that are not UTF-8 arrive as U+FFFD
	Revision uint64 `json:"revision"`
}

type fileArgs struct {
	Op        string `json:"op"`
	Name      string `json:"name"`
	Path      string `json:"path"`
	SHA256    string `json:"sha256"`
	Mode      string `json:"mode"`
	Overwrite bool   `json:"overwrite"`
}

// checkFile applies file's rules beyond its schema.
func checkFile(args json.RawMessage) error {
	var a fileArgs
	if err := decodeArgs(args, &a); err != nil {
		return err
	}
	if err := checkObjectName(a.Name); err != nil {
		return err
	}
	if strings.IndexByte(a.Path, 0) >= 0 || !filepath.IsAbs(a.Path) || filepath.Clean(a.Path) != a.Path || a.Path == "/" {
		return badArg("path", "%q: want a clean absolute path to a file", clip(a.Path))
	}
	if a.SHA256 != "" {
		if len(a.SHA256) != 64 || strings.Trim(strings.ToLower(a.SHA256), "0123456789abcdef") != "" {
			return badArg("sha256", "%q: want 64 hex digits", clip(a.SHA256))
		}
	}
	if a.Op == "put" && (a.Mode != "" || a.Overwrite) {
		return fmt.Errorf("%w: mode and overwrite apply to get, not put", ErrBadArgs)
	}
	if _, err := parseMode(a.Mode); err != nil {
		return err
	}
	return nil
}

// checkObjectName accepts names of letters, digits and ._-/ , not starting
// with '/' or '.', without empty, "." or ".." segments.
func checkObjectName(name string) error {
	if name == "" || name[0] == '/' || name[0] == '.' || strings.HasSuffix(name, "/") {
		return badArg("name", "%q: want letters, digits and ._-/ , not starting with / or .", clip(name))
	}
	for i := 0; i < len(name); i++ {
		ch := name[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || strings.IndexByte("._-/", ch) >= 0) {
			return badArg("name", "%q: byte %d %q not allowed (letters, digits and ._-/)", clip(name), i, ch)
		}
	}
	for seg := range strings.SplitSeq(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return badArg("name", "%q: empty, . or .. segment", clip(name))
		}
	}
	return nil
}

// safeMode is the widest mode file get writes for a caller below tier 3:
// no execute bits, no group or other write.
const safeMode fs.FileMode = 0o644

// fileTier is the tier one file call needs: a get writing a mode beyond
// safeMode (executable, or writable by others) needs an admin's tier 3.
func fileTier(args json.RawMessage) int {
	var a fileArgs
	if decodeArgs(args, &a) != nil || a.Op != "get" {
		return TierOperate
	}
	if m, err := parseMode(a.Mode); err == nil && m&^safeMode != 0 {
		return TierCritical
	}
	return TierOperate
}

// parseMode reads file's mode argument: three or four octal digits, no
// setuid, setgid or sticky bits.
func parseMode(s string) (fs.FileMode, error) {
	if s == "" {
		return 0o644, nil
	}
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || len(s) < 3 || v > 0o777 {
		return 0, badArg("mode", "%q: want octal permission bits such as 0644 (no setuid, setgid or sticky)", clip(s))
	}
	return fs.FileMode(v), nil
}

func (c *Catalogue) file(ctx context.Context, args json.RawMessage) (Output, error) {
	if c.files == nil {
		return Output{}, fmt.Errorf("%w: no file store", ErrUnavailable)
	}
	if len(c.roots) == 0 {
		return Output{}, fmt.Errorf("%w: no file roots on this node", ErrUnavailable)
	}
	var a fileArgs
	if err := decodeArgs(args, &a); err != nil {
		return Output{}, err
	}
	var r FileReply
	var err error
	if a.Op == "put" {
		r, err = c.filePut(ctx, a)
	} else {
		r, err = c.fileGet(ctx, a)
	}
	if err != nil {
		return Output{}, err
	}
	arrow := fmt.Sprintf("%s → %s", r.Path, r.Name)
	if r.Op == "get" {
		arrow = fmt.Sprintf("%s → %s", r.Name, r.Path)
	}
	return Output{Value: r, Text: fmt.Sprintf("%s %s (%s, sha256 %s)", r.Op, arrow, humanBytes(uint64(r.Size)), r.SHA256)}, nil
}

// filePut uploads a regular file of this node, under one of its file roots,
// to the store.
func (c *Catalogue) filePut(ctx context.Context, a fileArgs) (FileReply, error) {
	root, rel, err := c.confine(a.Path)
	if err != nil {
		return FileReply{}, err
	}
	defer root.Close()
	f, err := root.Open(rel)
	if err != nil {
		return FileReply{}, c.rootErr(a.Path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return FileReply{}, localErr(a.Path, err)
	}
	if !fi.Mode().IsRegular() {
		return FileReply{}, fmt.Errorf("%w: %s is not a regular file (%s)", ErrBadArgs, a.Path, fi.Mode().Type())
	}
	if fi.Size() > c.maxFileSize {
		return FileReply{}, fmt.Errorf("%w: %s is %d bytes, limit %d", wire.ErrTooLarge, a.Path, fi.Size(), c.maxFileSize)
	}
	if a.SHA256 != "" {
		// Check before uploading, so a wrong file never reaches the store.
		h := sha256.New()
		if _, err := io.Copy(h, &limitReader{r: f, left: c.maxFileSize, what: a.Path}); err != nil {
			return FileReply{}, err
		}
		if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, a.SHA256) {
			return FileReply{}, fmt.Errorf("%w: %s has sha256 %s, want %s", ErrChecksum, a.Path, got, strings.ToLower(a.SHA256))
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return FileReply{}, localErr(a.Path, err)
		}
	}
	h := sha256.New()
	lr := &limitReader{r: io.TeeReader(f, h), left: c.maxFileSize, what: a.Path}
	sum, size, err := c.files.Put(ctx, a.Name, lr)
	if err != nil {
		return FileReply{}, fmt.Errorf("store %s: %w", a.Name, err)
	}
	local := hex.EncodeToString(h.Sum(nil))
	read := c.maxFileSize - lr.left
	if !strings.EqualFold(sum, local) || size != read {
		return FileReply{}, fmt.Errorf("%w: read %d bytes with sha256 %s from %s, the store holds %d bytes with sha256 %s",
			ErrChecksum, read, local, a.Path, size, sum)
	}
	return FileReply{Op: "put", Name: a.Name, Path: a.Path, Size: size, SHA256: local}, nil
}

// fileGet writes an object of the store to a path of this node under one of
// its file roots: into a temporary file beside it, checked, synced, then
// renamed into place.
func (c *Catalogue) fileGet(ctx context.Context, a fileArgs) (r FileReply, err error) {
	mode, err := parseMode(a.Mode)
	if err != nil {
		return FileReply{}, err
	}
	root, rel, err := c.confine(a.Path)
	if err != nil {
		return FileReply{}, err
	}
	defer root.Close()
	dir, dirRel := filepath.Dir(a.Path), filepath.Dir(rel)
	if fi, err := root.Stat(dirRel); err != nil {
		return FileReply{}, c.rootErr(dir, err)
	} else if !fi.IsDir() {
		return FileReply{}, fmt.Errorf("%w: %s is not a directory", ErrNotFound, dir)
	}
	if fi, err := root.Lstat(rel); err == nil {
		if !fi.Mode().IsRegular() {
			return FileReply{}, fmt.Errorf("%w: %s exists and is not a regular file (%s)", ErrExists, a.Path, fi.Mode().Type())
		}
		if !a.Overwrite {
			return FileReply{}, fmt.Errorf("%w: %s (pass overwrite=true to replace it)", ErrExists, a.Path)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return FileReply{}, c.rootErr(a.Path, err)
	}

	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmpRel := filepath.Join(dirRel, "."+filepath.Base(rel)+".rn-"+hex.EncodeToString(rnd[:]))
	tmpName := filepath.Join(dir, filepath.Base(tmpRel))
	tmp, err := root.OpenFile(tmpRel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return FileReply{}, c.rootErr(dir, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			root.Remove(tmpRel)
		}
	}()
	h := sha256.New()
	lw := &limitWriter{w: io.MultiWriter(tmp, h), left: c.maxFileSize, what: a.Name}
	sum, size, err := c.files.Get(ctx, a.Name, lw)
	if err != nil {
		return FileReply{}, fmt.Errorf("fetch %s: %w", a.Name, err)
	}
	local := hex.EncodeToString(h.Sum(nil))
	written := c.maxFileSize - lw.left
	if !strings.EqualFold(sum, local) || size != written {
		return FileReply{}, fmt.Errorf("%w: %s: the store recorded %d bytes with sha256 %s, received %d bytes with sha256 %s",
			ErrChecksum, a.Name, size, sum, written, local)
	}
	if a.SHA256 != "" && !strings.EqualFold(local, a.SHA256) {
		return FileReply{}, fmt.Errorf("%w: %s has sha256 %s, want %s", ErrChecksum, a.Name, local, strings.ToLower(a.SHA256))
	}
	if err = tmp.Chmod(mode); err != nil { // on the descriptor: no path race
		return FileReply{}, localErr(tmpName, err)
	}
	if err = tmp.Sync(); err != nil {
		return FileReply{}, localErr(tmpName, err)
	}
	if err = tmp.Close(); err != nil {
		return FileReply{}, localErr(tmpName, err)
	}
	if err = root.Rename(tmpRel, rel); err != nil {
		return FileReply{}, c.rootErr(a.Path, err)
	}
	if d, err := root.Open(dirRel); err == nil { // make the rename durable; best effort
		d.Sync()
		d.Close()
	}
	return FileReply{Op: "get", Name: a.Name, Path: a.Path, Size: size, SHA256: local}, nil
}

// localErr names a local file error, marking a missing file as not found.
func localErr(path string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotFound, path)
	}
	return fmt.Errorf("%s: %w", path, err)
}

// limitReader fails once more than left bytes are read.
type limitReader struct {
	r    io.Reader
	left int64
	what string
}

// Read reads from the underlying reader until more than the limit was read.
func (l *limitReader) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, fmt.Errorf("%w: %s grew past the limit", wire.ErrTooLarge, l.what)
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return 0, fmt.Errorf("%w: %s grew past the limit", wire.ErrTooLarge, l.what)
	}
	return n, err
}

// limitWriter fails once more than left bytes would be written.
type limitWriter struct {
	w    io.Writer
	left int64
	what string
}

// Write refuses a write that would go past the limit.
func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, fmt.Errorf("%w: %s is larger than the limit", wire.ErrTooLarge, l.what)
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	return n, err
}

type configArgs struct {
	Op    string  `json:"op"`
	Key   string  `json:"key"`
	Value *string `json:"value"`
}

// checkConfig applies config's rules beyond its schema: keys as rn_config
// (a NATS KV bucket) accepts them, a value exactly when setting.
func checkConfig(args json.RawMessage) error {
	var a configArgs
	if err := decodeArgs(args, &a); err != nil {
		return err
	}
	if err := checkConfigKey(a.Key); err != nil {
		return err
	}
	if a.Op == "set" && a.Value == nil {
		return fmt.Errorf("%w: missing required argument %q for set", ErrBadArgs, "value")
	}
	if a.Op == "get" && a.Value != nil {
		return badArg("value", "only set takes a value")
	}
	return nil
}

// checkConfigKey accepts NATS KV keys: letters, digits and -/_= separated by
// single dots, not starting or ending with a dot.
func checkConfigKey(key string) error {
	if key == "" || key[0] == '.' || key[len(key)-1] == '.' || strings.Contains(key, "..") {
		return badArg("key", "%q: want letters, digits and -/_= in dot-separated parts", clip(key))
	}
	for i := 0; i < len(key); i++ {
		ch := key[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || strings.IndexByte("-/_=.", ch) >= 0) {
			return badArg("key", "%q: byte %d %q not allowed (letters, digits and -/_=.)", clip(key), i, ch)
		}
	}
	return nil
}

func configRisk(args json.RawMessage) Risk {
	var a configArgs
	if decodeArgs(args, &a) == nil && a.Op == "get" {
		return Read
	}
	return Mutate
}

func (c *Catalogue) configVerb(ctx context.Context, args json.RawMessage) (Output, error) {
	if c.config == nil {
		return Output{}, fmt.Errorf("%w: no config store", ErrUnavailable)
	}
	var a configArgs
	if err := decodeArgs(args, &a); err != nil {
		return Output{}, err
	}
	if a.Op == "set" {
		rev, err := c.config.Set(ctx, a.Key, []byte(*a.Value))
		if err != nil {
			return Output{}, fmt.Errorf("set %s: %w", a.Key, err)
		}
		r := ConfigReply{Op: "set", Key: a.Key, Value: *a.Value, Revision: rev}
		return Output{Value: r, Text: fmt.Sprintf("%s = %s (revision %d)", r.Key, r.Value, r.Revision)}, nil
	}
	v, rev, err := c.config.Get(ctx, a.Key)
	if err != nil {
		return Output{}, fmt.Errorf("get %s: %w", a.Key, err)
	}
	r := ConfigReply{Op: "get", Key: a.Key, Value: string(v), Revision: rev}
	return Output{Value: r, Text: r.Value}, nil
}
