// Package tunnel carries a byte stream over NATS between a dialer (the
// gateway's /proxy/ handler, `robonet proxy`) and a target node, which
// connects it to one of its allowed loopback ports: the mesh proxy of
// DESIGN.md, where the target opens no port.
//
// A tunnel is a pair of data subjects under each end's private inbox,
// exchanged over the signed open handshake (see open.go). Frames carry
// sequence numbers (a gap resets the tunnel: core NATS may drop, a stream
// must not silently lose bytes), credit-based flow control (a receiver
// grants a window and acks what it consumed, so memory stays bounded
// whatever the body size), half-close, reset and keepalives. Conn is a
// net.Conn with deadlines.
//
// It does not speak HTTP (gateway/proxy.go does) and does not decide who
// may open what beyond the target's checks: operator or admin, an allowed
// port, per-node and per-key tunnel limits.
package tunnel
