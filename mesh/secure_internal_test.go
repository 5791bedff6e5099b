package mesh

import "testing"

// The client insists on TLS for every server URL that is not loopback, so
// it never authenticates in clear across a network (nats.go then refuses a
// server without TLS: ErrSecureConnWanted).
func TestSecureUnlessLoopback(t *testing.T) {
	for server, want := range map[string]bool{
		"nats://127.0.0.1:4222":              false,
		"nats://127.1.2.3:4222":              false,
		"localhost:4222":                     false,
		"nats://[::1]:4222":                  false,
		"nats://10.0.0.5:4222":               true,
		"nats://node-a:4222":                 true,
		"tls://192.0.2.1":                    true,
		"nats://0.0.0.0:4222":                true,
		"nats://127.0.0.1:1,nats://node-b:1": true,
	} {
		_, secure, err := newNodePin(Options{Server: server})
		if err != nil || secure != want {
			t.Errorf("%s: secure %v (%v), want %v", server, secure, err, want)
		}
	}
}
