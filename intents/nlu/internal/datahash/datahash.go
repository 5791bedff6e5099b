// Package datahash computes the SHA-256 that ties a model file of package
// nlu to the data and trainer it came from. It lives apart from nlu so that
// programs that only classify do not link crypto/sha256.
package datahash

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// File is one input of the hash.
type File struct {
	Name string
	Data []byte
}

// Of returns the hex SHA-256 of the trainer's description and the files, in
// the order given.
func Of(trainer string, files []File) string {
	h := sha256.New()
	fmt.Fprintf(h, "trainer %s\n", trainer)
	for _, f := range files {
		fmt.Fprintf(h, "%s %d\n", f.Name, len(f.Data))
		h.Write(f.Data)
	}
	return hex.EncodeToString(h.Sum(nil))
}
