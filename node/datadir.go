package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/mesh"
)

// Files in a node's data dir.
const (
	NodeSeedFile     = "node.nk"     // the node's nkey seed (mode 0600)
	OperatorSeedFile = "operator.nk" // the local operator's nkey seed: the CLI's credentials
	StateFile        = "node.json"   // chevron, name and swarm the node claimed
	lockFile         = "lock"
	// The JetStream store of a single node and of a swarm member are kept
	// apart: a clustered server deletes streams its meta group does not know
	// ("orphans"), so reusing a standalone store would lose it silently.
	storeSingle = "store-single"
	storeSwarm  = "store-swarm"
)

// ErrDataDir is wrapped by every data-dir error.
var ErrDataDir = errors.New("data dir")

// dataDir is an opened, locked data directory.
type dataDir struct {
	path string
	lock *os.File
}

// openDataDir creates dir if missing (mode 0700) and takes an exclusive lock,
// so two nodes never share one store.
func openDataDir(dir string) (*dataDir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrDataDir, dir, err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrDataDir, dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%w %s: not a directory", ErrDataDir, dir)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%w %s: not writable: %v", ErrDataDir, dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		owner, _ := os.ReadFile(f.Name())
		f.Close()
		return nil, fmt.Errorf("%w %s: in use by another robonet node (pid %s)", ErrDataDir, dir, bytes.TrimSpace(owner))
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dataDir{path: dir, lock: f}, nil
}

func (d *dataDir) file(name string) string { return filepath.Join(d.path, name) }

func (d *dataDir) close() {
	if d.lock != nil {
		_ = syscall.Flock(int(d.lock.Fd()), syscall.LOCK_UN)
		d.lock.Close()
		d.lock = nil
	}
}

// seed loads the user nkey seed in name, creating it (0600) when the file
// does not exist. An existing file that is not a valid seed is an error and
// is left untouched.
func (d *dataDir) seed(name string) (nkeys.KeyPair, error) {
	kp, _, err := loadOrCreateSeed(d.file(name))
	return kp, err
}

// loadOrCreateSeed is dataDir.seed for a path. Creating never replaces a
// file (writeFileAtomic, exclusive), so two processes creating at once
// agree on the one that was linked first.
func loadOrCreateSeed(path string) (kp nkeys.KeyPair, created bool, err error) {
	kp, err = mesh.ReadSeed(path)
	if err == nil {
		return kp, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	kp, err = nkeys.CreateUser()
	if err != nil {
		return nil, false, fmt.Errorf("create nkey: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, false, fmt.Errorf("create nkey: %w", err)
	}
	if err := writeFileAtomic(path, append(seed, '\n'), 0o600, true); err != nil {
		if other, rerr := mesh.ReadSeed(path); rerr == nil {
			return other, false, nil // another process made it first
		}
		return nil, false, err
	}
	return kp, true, nil
}

// EnsureIdentity returns the public key of the node key in dir
// (NodeSeedFile), creating dir (0700) and the key (0600, written
// atomically, as a node does on its first start) when missing. It takes no
// data-dir lock, so it also reads the key of a node running on dir: a node
// never replaces its seed. colonize runs it on the target so that only the
// public key leaves the host.
func EnsureIdentity(dir string) (pub string, created bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", false, fmt.Errorf("%w %s: %v", ErrDataDir, dir, err)
	}
	if st, err := os.Stat(dir); err != nil {
		return "", false, fmt.Errorf("%w %s: %v", ErrDataDir, dir, err)
	} else if !st.IsDir() {
		return "", false, fmt.Errorf("%w %s: not a directory", ErrDataDir, dir)
	}
	kp, created, err := loadOrCreateSeed(filepath.Join(dir, NodeSeedFile))
	if err != nil {
		return "", false, err
	}
	if pub, err = kp.PublicKey(); err != nil {
		return "", false, err
	}
	return pub, created, nil
}

// savedState is what a node remembers across restarts besides its keys.
type savedState struct {
	Chevron string `json:"chevron"`
	Name    string `json:"name"`
	Swarm   string `json:"swarm"`
	// Role is wire.NodeRoleCore or wire.NodeRoleEdge ("" before roles:
	// a member with a chevron was a core member).
	Role string `json:"role,omitempty"`
	// CoreLeafs are the core's leaf addresses an edge last learnt, so a
	// restart needs no --join.
	CoreLeafs []string `json:"core_leafs,omitempty"`
	// EdgeSwarm is what an edge adopted from its core (fededge.go).
	EdgeSwarm *edgeSwarm `json:"edge_swarm,omitempty"`
}

func (d *dataDir) loadState() (savedState, error) {
	var s savedState
	data, err := os.ReadFile(d.file(StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("%w: %v", ErrDataDir, err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("%w: %s is corrupt (%v); move it away to start fresh", ErrDataDir, d.file(StateFile), err)
	}
	return s, nil
}

func (d *dataDir) saveState(s savedState) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(d.file(StateFile), append(data, '\n'), 0o600, false)
}

// writeFileAtomic writes through a temporary file and a rename, so a crash
// leaves the old content or the new, never a torn file. With exclusive set it
// refuses to replace an existing file.
func writeFileAtomic(path string, data []byte, mode os.FileMode, exclusive bool) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("%w: write %s: %v", ErrDataDir, path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("%w: write %s: %v", ErrDataDir, path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("%w: write %s: %v", ErrDataDir, path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("%w: write %s: %v", ErrDataDir, path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("%w: write %s: %v", ErrDataDir, path, err)
	}
	if exclusive {
		// Link fails if path exists: never clobber a seed.
		if err := os.Link(tmp.Name(), path); err != nil {
			return fmt.Errorf("%w: write %s: %v", ErrDataDir, path, err)
		}
		return nil
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("%w: write %s: %v", ErrDataDir, path, err)
	}
	return nil
}
