// Package media serves a node's camera, screen and test-pattern streams to
// browsers over WebRTC: an ffmpeg subprocess per stream encodes H.264
// constrained baseline as RTP into one pion track shared by every viewer
// (started on the first viewer, stopped after a linger); WHEP signalling
// (draft-ietf-wish-whep-03) reaches the node over NATS
// (rn.<chevron>.media.<stream>.whep[.<session>]), so the camera's node opens
// no TCP port. Two paths: direct (the browser reaches the node's one UDP
// port, ICE-UDP mux) and relay (the gateway terminates WebRTC and takes the
// RTP over rn.<chevron>.media.<stream>.rtp).
package media
