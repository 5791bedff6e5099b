package node

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/mesh"
)

// fileStore serves the file verb from the rn_files object store.
type fileStore struct {
	obs  jetstream.ObjectStore
	read *mesh.LeaderKV // for the object's metadata, from the stream leader
}

func (f fileStore) Put(ctx context.Context, name string, r io.Reader) (string, int64, error) {
	h := sha256.New()
	info, err := f.obs.Put(ctx, jetstream.ObjectMeta{Name: name}, io.TeeReader(r, h))
	if err != nil {
		return "", 0, fmt.Errorf("%s: %w", BucketFiles, err)
	}
	return hex.EncodeToString(h.Sum(nil)), int64(info.Size), nil
}

// Get asks the stream leader which version of name is current, then reads
// that version: the object store client reads metadata with direct gets,
// which a replica that has not applied the latest put yet may answer with
// "not found" or the previous version.
func (f fileStore) Get(ctx context.Context, name string, w io.Writer) (string, int64, error) {
	meta, found, err := f.read.Last(ctx, "OBJ_"+BucketFiles, "$O."+BucketFiles+".M."+base64.URLEncoding.EncodeToString([]byte(name)))
	if err != nil {
		return "", 0, fmt.Errorf("%s: %w", BucketFiles, err)
	}
	var want jetstream.ObjectInfo
	if found {
		if err := json.Unmarshal(meta.Value, &want); err != nil {
			return "", 0, fmt.Errorf("%s %q: metadata: %v", BucketFiles, name, err)
		}
	}
	if !found || want.Deleted {
		return "", 0, fmt.Errorf("%s %q: %w", BucketFiles, name, command.ErrNotFound)
	}
	res, err := f.current(ctx, name, want.NUID)
	if err != nil {
		return "", 0, err
	}
	defer res.Close()
	info, err := res.Info()
	if err != nil {
		return "", 0, fmt.Errorf("%s: %w", BucketFiles, err)
	}
	if _, err := io.Copy(w, res); err != nil {
		return "", 0, fmt.Errorf("%s %q: %w", BucketFiles, name, err)
	}
	digest, err := hexDigest(info.Digest)
	if err != nil {
		return "", 0, err
	}
	return digest, int64(info.Size), nil
}

// current opens version nuid of name, waiting (up to ctx's deadline) for
// the replica this node reads from to catch up with the leader.
func (f fileStore) current(ctx context.Context, name, nuid string) (jetstream.ObjectResult, error) {
	wait := 20 * time.Millisecond
	for {
		res, err := f.obs.Get(ctx, name)
		if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return nil, fmt.Errorf("%s: %w", BucketFiles, err)
		}
		if err == nil {
			info, ierr := res.Info()
			if ierr == nil && info.NUID == nuid {
				return res, nil
			}
			res.Close()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s %q: this node's replica has not caught up with the stream leader: %w", BucketFiles, name, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(wait*2, 500*time.Millisecond)
	}
}

// hexDigest turns the object store's "SHA-256=<base64url>" into hex.
func hexDigest(d string) (string, error) {
	b64, ok := strings.CutPrefix(d, "SHA-256=")
	if !ok {
		return "", fmt.Errorf("%s: digest %q is not SHA-256", BucketFiles, d)
	}
	raw, err := base64.URLEncoding.DecodeString(b64)
	if err != nil {
		return "", fmt.Errorf("%s: digest %q: %v", BucketFiles, d, err)
	}
	return hex.EncodeToString(raw), nil
}

// configStore serves the config verb from the rn_config bucket. Reads go
// to the stream leader, so a value set through one node is read back
// through any other at once.
type configStore struct {
	kv   jetstream.KeyValue
	read *mesh.LeaderKV
}

func (c configStore) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	e, found, err := c.read.Get(ctx, key)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", BucketConfig, err)
	}
	if !found {
		return nil, 0, fmt.Errorf("%s %q: %w", BucketConfig, key, command.ErrNotFound)
	}
	return e.Value, e.Revision, nil
}

func (c configStore) Set(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := c.kv.Put(ctx, key, value)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", BucketConfig, err)
	}
	return rev, nil
}
