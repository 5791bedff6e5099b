package node

// SetAuthorityPinsForTest pins ancestor founder keys as a federation token
// will (H1's AuthorityPins), for tests of inherited authority.
func SetAuthorityPinsForTest(n *Node, pins ...string) { n.inh.setTestPins(pins) }
