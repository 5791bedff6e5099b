// Package deploy holds what runs robonet outside `go run`: the image build
// (build-image, Dockerfile), the docker-compose files (compose/), the
// systemd unit (systemd/) and the Kubernetes manifests (k8s/). Its only Go
// is the tests that hold those files to their contract — the manifests
// decoded strictly into the Kubernetes API types, the compose files and the
// unit parsed and checked — so it owns no robonet code and imports none.
package deploy
