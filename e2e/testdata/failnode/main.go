// Command failnode stands in for a robonet build that cannot start a node:
// `identity` works as robonet's does for a data dir that already has a
// key (colonize runs it before starting the service), `up` exits 1 at once.
// The colonize e2e tests install it to see a failed upgrade rolled back.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/trust"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "identity" {
		data := "/var/lib/robonet"
		for i, a := range os.Args {
			if a == "--data" && i+1 < len(os.Args) {
				data = os.Args[i+1]
			}
		}
		seed, err := os.ReadFile(filepath.Join(data, "node.nk"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "failnode:", err)
			os.Exit(1)
		}
		kp, err := nkeys.FromSeed(bytes.TrimSpace(seed))
		if err != nil {
			fmt.Fprintln(os.Stderr, "failnode:", err)
			os.Exit(1)
		}
		pub, _ := kp.PublicKey()
		out := map[string]any{"pubkey": pub, "created": false, "data": data}
		for i, a := range os.Args {
			if a == "--prove" && i+1 < len(os.Args) {
				if out["proof"], err = trust.ProveIdentity(kp, os.Args[i+1]); err != nil {
					fmt.Fprintln(os.Stderr, "failnode:", err)
					os.Exit(1)
				}
			}
		}
		_ = json.NewEncoder(os.Stdout).Encode(out)
		return
	}
	fmt.Fprintln(os.Stderr, "failnode: this build cannot start a node (colonize rollback test)")
	os.Exit(1)
}
