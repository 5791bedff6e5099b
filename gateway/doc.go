// Package gateway is a node's HTTP side (default 127.0.0.1:8340): the
// embedded dashboard, the REST API and its live WebSocket, and the login
// service that turns a CLI user's signed request into a browser session or
// a bearer token.
//
// Every authenticated request has a principal: a user's key and role, and a
// mesh client that signs as a session key the user delegated (wire.Delegation),
// so nodes judge what the browser asks exactly as they judge the CLI. The
// gateway owns listening (TLS off loopback), sessions, tokens, request
// limits and the JSON shapes of gateway/API.md; it does not own what a role
// may do (the nodes decide), the mesh HTTP proxy, /metrics or media, which
// are mounted with Handle by the command that composes the node.
package gateway
