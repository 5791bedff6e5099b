package node

// SetCoreLeafs makes an edge dial exactly addrs (and not the core's
// discovered leaf addresses): tests put a proxy between edge and core.
func SetCoreLeafs(o *Options, addrs []string) { o.coreLeafs = addrs }
