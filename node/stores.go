package node

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/robonet-mesh/robonet/command"
)

// fileStore serves the file verb from the rn_files object store.
type fileStore struct{ obs jetstream.ObjectStore }

func (f fileStore) Put(ctx context.Context, name string, r io.Reader) (string, int64, error) {
	h := sha256.New()
	info, err := f.obs.Put(ctx, jetstream.ObjectMeta{Name: name}, io.TeeReader(r, h))
	if err != nil {
		return "", 0, fmt.Errorf("%s: %w", BucketFiles, err)
	}
	return hex.EncodeToString(h.Sum(nil)), int64(info.Size), nil
}

func (f fileStore) Get(ctx context.Context, name string, w io.Writer) (string, int64, error) {
	res, err := f.obs.Get(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return "", 0, fmt.Errorf("%s %q: %w", BucketFiles, name, command.ErrNotFound)
	}
	if err != nil {
		return "", 0, fmt.Errorf("%s: %w", BucketFiles, err)
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

// configStore serves the config verb from the rn_config bucket.
type configStore struct{ kv jetstream.KeyValue }

func (c configStore) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	e, err := c.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, fmt.Errorf("%s %q: %w", BucketConfig, key, command.ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", BucketConfig, err)
	}
	return e.Value(), e.Revision(), nil
}

func (c configStore) Set(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := c.kv.Put(ctx, key, value)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", BucketConfig, err)
	}
	return rev, nil
}
