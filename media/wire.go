package media

// The NATS payloads of the media subjects. Every message is JSON; requests
// on .whep, .whep.<session> and .relay are HCTH-signed by the viewer's key
// (mesh.Signer.SignMsg) and the node checks the signer's tier.

// MaxWHEPBody is the largest SDP offer or sdpfrag a WHEPRequest may carry.
const MaxWHEPBody = 64 << 10

// WHEPRequest is the body of a request on rn.<chevron>.media.<stream>.whep
// (POST) and rn.<chevron>.media.<stream>.whep.<session> (PATCH, DELETE).
type WHEPRequest struct {
	Method      string `json:"method"` // POST, PATCH, DELETE
	ContentType string `json:"content_type,omitempty"`
	IfMatch     string `json:"if_match,omitempty"`
	Body        string `json:"body,omitempty"` // SDP offer or sdpfrag, at most MaxWHEPBody
}

// WHEPReply is wire.Reply.Data of the node's signed answer. For a failure
// wire.Reply.Error is set too, and Data still carries the status and
// retry_after so the gateway can answer with them.
type WHEPReply struct {
	Status      int    `json:"status"` // 201, 204, 200, or the error's
	Session     string `json:"session,omitempty"`
	ETag        string `json:"etag,omitempty"`
	ContentType string `json:"content_type,omitempty"`
	Body        string `json:"body,omitempty"` // SDP answer
	RetryAfter  int    `json:"retry_after,omitempty"`
	Error       string `json:"error,omitempty"`
	Code        string `json:"code,omitempty"`
}

// StreamInfo is one stream in a node's rn.<chevron>.media.list answer.
type StreamInfo struct {
	Chevron string `json:"chevron"`
	Stream  string `json:"stream"`
	Source  string `json:"source"`
	Kind    string `json:"kind"`
	Codec   string `json:"codec"` // "H264"
	Width   int    `json:"width"`
	Height  int    `json:"height"`
	FPS     int    `json:"fps"`
	Live    bool   `json:"live"` // ffmpeg running and packets flowing
	Viewers int    `json:"viewers"`
	Error   string `json:"error,omitempty"` // the last run's failure, if the last run failed
}

// MediaList is wire.Reply.Data of a node's rn.<chevron>.media.list answer.
type MediaList struct {
	Chevron string       `json:"chevron"`
	Streams []StreamInfo `json:"streams"`
	Addrs   []string     `json:"addrs"`    // the node's ICE host IPs: the gateway picks the direct path for browsers on these subnets
	UDPPort int          `json:"udp_port"` // 0: no UDP, the direct path is impossible
}

// RelayRequest is the body of a lease request on rn.<chevron>.media.<stream>.relay.
type RelayRequest struct {
	Stream string `json:"stream"`
}
