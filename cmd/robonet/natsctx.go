package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
)

// natsContext is the part of the `nats` CLI's context file robonet writes
// (~/.config/nats/context/<name>.json).
type natsContext struct {
	Description string `json:"description"`
	URL         string `json:"url"`
	NKey        string `json:"nkey"`
	// InboxPrefix: each identity may subscribe only under its own inbox,
	// _rn.inbox.<key>, so requests from `nats` must use it.
	InboxPrefix string `json:"inbox_prefix"`
	// CA is a PEM file the nats CLI verifies the server's certificate
	// against: on a TLS client port, the node's own certificate, which is
	// its own CA (trust.ClientCertificate); empty for a plain loopback port.
	CA string `json:"ca,omitempty"`
}

func newNatsContextCmd(g *globals) *cobra.Command {
	var name, role, user string
	cmd := &cobra.Command{
		Use:   "nats-context",
		Short: "Write a context for the stock `nats` CLI (then: nats --context robonet sub 'rn.>')",
		Long: `Write a context for the stock nats CLI. Without --role it uses your own credentials (--nkey, or the
local operator's, an admin). With --role it first adds a user of that role (default name nats-<role>)
with a fresh key kept in <data>/users/<name>.nk, e.g. --role observer for read-only rights:
subscribe to rn.>, publish only read-only commands and queries.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := subjects.ValidToken(name); err != nil {
				return fmt.Errorf("--context: %w", err)
			}
			seed := g.nkey
			if seed == "" {
				seed = filepath.Join(g.data, node.OperatorSeedFile)
			}
			seed, err := filepath.Abs(seed)
			if err != nil {
				return err
			}
			if _, err := mesh.ReadSeed(seed); err != nil {
				return fmt.Errorf("%w (run 'robonet up' first, or pass --nkey)", err)
			}
			if role != "" {
				if user == "" {
					user = "nats-" + role
				}
				if seed, err = roleSeed(cmd.Context(), g, role, user); err != nil {
					return err
				}
			}
			kp, err := mesh.ReadSeed(seed)
			if err != nil {
				return err
			}
			pub, _ := kp.PublicKey()
			dir, err := natsContextDir()
			if err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			ca, err := nodeCA(cmd.Context(), g)
			if err != nil {
				return err
			}
			path := filepath.Join(dir, name+".json")
			data, _ := json.MarshalIndent(natsContext{
				Description: "robonet swarm via " + g.server,
				URL:         g.server,
				NKey:        seed,
				InboxPrefix: subjects.Inbox(pub),
				CA:          ca,
			}, "", "  ")
			if err := os.WriteFile(path, append(data, '\n'), 0o600); err != nil {
				return err
			}
			if g.json {
				return printJSON(cmd.OutOrStdout(), map[string]string{"context": name, "path": path, "url": g.server, "nkey": seed, "ca": ca})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\n", path)
			if ca != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "the node's TLS certificate (pinned by its key): %s\n", ca)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "now: nats --context %s sub 'rn.>'\n", name)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "context", "robonet", "context name")
	cmd.Flags().StringVar(&role, "role", "", "make a user of this role for the context: admin, operator or observer")
	cmd.Flags().StringVar(&user, "user", "", "name of that user (default nats-<role>)")
	return cmd
}

// roleSeed returns the seed file of local user name, adding the user with
// role (through the caller's admin credentials) when it has no seed yet.
func roleSeed(ctx context.Context, g *globals, role, name string) (string, error) {
	path, err := filepath.Abs(filepath.Join(g.data, "users", name+".nk"))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := g.connect(ctx)
	if err != nil {
		return "", err
	}
	defer c.Close()
	ids, err := c.Identities(ctx)
	if err != nil {
		return "", err
	}
	pub, seed, err := mesh.NewUserKey()
	if err != nil {
		return "", err
	}
	if _, err := ids.AddUser(ctx, name, role, pub, signerKey(c), time.Now()); err != nil {
		return "", permissionHint(err, "adding a user needs an admin's credentials")
	}
	if err := writeSeed(path, seed); err != nil {
		return "", err
	}
	return path, nil
}

// nodeCA connects to the node as the CLI does (its key checked against the
// data dir's or the pinned one) and, when its client port is TLS, writes its
// certificate where a nats context can name it as "ca":
// <config>/robonet/certs/<node key>.pem. It checks first that the stock
// nats CLI will accept it for the host in --server: the certificate must
// name that host. "" for a plain (loopback) port.
func nodeCA(ctx context.Context, g *globals) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := g.connect(ctx)
	if err != nil {
		return "", err
	}
	defer c.Close()
	st, err := c.Conn().TLSConnectionState()
	if err != nil || len(st.PeerCertificates) == 0 {
		return "", nil
	}
	cert := st.PeerCertificates[0]
	addr, err := mesh.NodeAddr(c.Conn().ConnectedUrl())
	if err != nil {
		return "", err
	}
	host, _, _ := net.SplitHostPort(addr)
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: host}); err != nil {
		var names []string
		for _, ip := range cert.IPAddresses {
			names = append(names, ip.String())
		}
		names = append(names, cert.DNSNames...)
		return "", fmt.Errorf("the node's TLS certificate does not name %s, so the nats CLI would refuse it (%v); "+
			"pass --server with a name it lists: %s", host, err, strings.Join(names, ", "))
	}
	known, err := mesh.KnownNodesFile()
	if err != nil {
		return "", err
	}
	path := filepath.Join(filepath.Dir(known), "certs", cert.Subject.CommonName+".pem")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", err
	}
	return path, nil
}

// natsContextDir is where the nats CLI looks for contexts.
func natsContextDir() (string, error) {
	if x := os.Getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "nats", "context"), nil
	}
	h, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the nats context directory: %w", err)
	}
	return filepath.Join(h, ".config", "nats", "context"), nil
}
