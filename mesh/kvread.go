package mesh

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LeaderKV reads a key-value bucket through its stream leader (the
// JetStream API's STREAM.MSG.GET), not through the direct-get path the KV
// client uses, which any replica answers: a replica that has not applied
// the latest write yet would make a value just written look missing or old
// to the next reader (seen in CI: config set through one node, read through
// another, "not found").
type LeaderKV struct {
	bucket string
	nc     *nats.Conn
	api    string // JetStream API prefix, ending in '.'
}

// KVEntry is the newest value of a key, as its stream leader has it.
type KVEntry struct {
	Value    []byte
	Revision uint64
	Created  time.Time
}

// NewLeaderKV reads bucket through js's connection and API prefix.
func NewLeaderKV(js jetstream.JetStream, bucket string) *LeaderKV {
	o := js.Options()
	api := jetstream.DefaultAPIPrefix
	switch {
	case o.APIPrefix != "":
		api = strings.TrimSuffix(o.APIPrefix, ".") + "."
	case o.Domain != "":
		api = "$JS." + o.Domain + ".API."
	}
	return &LeaderKV{bucket: bucket, nc: js.Conn(), api: api}
}

// msgGetResponse is the JetStream API's answer to STREAM.MSG.GET.
type msgGetResponse struct {
	Error *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
	Message *struct {
		Seq  uint64    `json:"seq"`
		Hdrs []byte    `json:"hdrs"` // base64 in the JSON
		Data []byte    `json:"data"`
		Time time.Time `json:"time"`
	} `json:"message"`
}

// Get returns key's newest value; found is false when there is none or it
// is a delete or purge marker. A ctx without a deadline gets 5 s.
func (l *LeaderKV) Get(ctx context.Context, key string) (e KVEntry, found bool, err error) {
	return l.Last(ctx, "KV_"+l.bucket, "$KV."+l.bucket+"."+key)
}

// Last returns the newest message on subject in stream, read by the
// stream's leader; found is false as for Get. It serves the object store's
// metadata too (stream OBJ_<bucket>).
func (l *LeaderKV) Last(ctx context.Context, stream, subject string) (e KVEntry, found bool, err error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	req, err := json.Marshal(map[string]string{"last_by_subj": subject})
	if err != nil {
		return e, false, err
	}
	subj := l.api + "STREAM.MSG.GET." + stream
	msg, err := l.nc.RequestWithContext(ctx, subj, req)
	if err != nil {
		return e, false, fmt.Errorf("%s: %w", subj, err)
	}
	var resp msgGetResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return e, false, fmt.Errorf("%s: decode: %w", subj, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound) {
			return e, false, nil
		}
		return e, false, fmt.Errorf("%s: %s (code %d)", subj, resp.Error.Description, resp.Error.ErrCode)
	}
	if resp.Message == nil {
		return e, false, fmt.Errorf("%s: empty answer", subj)
	}
	if len(resp.Message.Hdrs) > 0 {
		h, err := nats.DecodeHeadersMsg(resp.Message.Hdrs)
		if err != nil {
			return e, false, fmt.Errorf("%s: headers: %w", subj, err)
		}
		// KV-Operation DEL or PURGE, or a server marker (TTL, purge).
		if h.Get("KV-Operation") != "" || h.Get(jetstream.MarkerReasonHeader) != "" {
			return e, false, nil
		}
	}
	return KVEntry{Value: resp.Message.Data, Revision: resp.Message.Seq, Created: resp.Message.Time.UTC()}, true, nil
}

// withDefaultTimeout gives ctx a 5 s deadline when it has none: a NATS
// request needs one.
func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, 5*time.Second)
}
