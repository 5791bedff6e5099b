package subjects

// Core control queries (admins only; robonet core add|remove|size).
const (
	// QueryCoreAdd promotes an edge: asked of the edge itself
	// (QueryAt), which saves role core and restarts.
	QueryCoreAdd = "core.add"
	// QueryCoreRemove demotes a core member: any core node in the queue
	// group, or the member itself at QueryAt (which then restarts as an
	// edge).
	QueryCoreRemove = "core.remove"
	// QueryCoreSize sets the core's size (rn_config core.size).
	QueryCoreSize = "core.size"
)
