package node

// sentinelBlocked reports whether this node's Sentinel has disconnected pub
// for now (a local, expiring decision; see node/sentinel.go).
func (n *Node) sentinelBlocked(pub string) bool { return false }
