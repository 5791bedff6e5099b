package trust

import (
	"bytes"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"
)

// The client-port certificate is the same bytes for the same key and names,
// verifies as its own root for every name it lists (what the stock nats CLI
// does with the context's "ca" file), and a copy kept from before the
// node's names changed still verifies the new certificate.
func TestClientCertificateIsStableAndItsOwnRoot(t *testing.T) {
	kp := serverKey(t, 7)
	pub, _ := kp.PublicKey()
	names := []string{"127.0.0.1", "::1", "Node-A.example.", "localhost", "127.0.0.1"}
	a, err := ClientCertificate(kp, names)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ClientCertificate(kp, []string{"localhost", "node-a.example", "::1", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Certificate[0], b.Certificate[0]) {
		t.Fatal("same key and names gave different certificates")
	}
	pc, err := CheckPeerCertificate(a.Certificate, time.Now())
	if err != nil || pc.Pub != pub || !pc.Cred.IsZero() {
		t.Fatalf("CheckPeerCertificate = %+v, %v; want key %s", pc, err, pub)
	}
	roots := x509.NewCertPool()
	roots.AddCert(a.Leaf)
	for _, host := range []string{"127.0.0.1", "::1", "node-a.example", "localhost"} {
		if _, err := a.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: host}); err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
	if _, err := a.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "10.9.9.9"}); err == nil {
		t.Error("verified for a name it does not list")
	}
	// The node moved: new names, new bytes, same key; the old copy verifies it.
	moved, err := ClientCertificate(kp, []string{"192.0.2.7", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(moved.Certificate[0], a.Certificate[0]) {
		t.Fatal("other names gave the same certificate")
	}
	if _, err := moved.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "192.0.2.7"}); err != nil {
		t.Errorf("the old copy does not verify the moved node's certificate: %v", err)
	}
	// Another key under the same name is not verified by the copy.
	other, err := ClientCertificate(serverKey(t, 8), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "127.0.0.1"}); err == nil {
		t.Error("another node's certificate verified against this node's copy")
	}
	if !a.Leaf.IsCA || a.Leaf.MaxPathLen != 0 || !a.Leaf.MaxPathLenZero {
		t.Errorf("IsCA %v MaxPathLen %d", a.Leaf.IsCA, a.Leaf.MaxPathLen)
	}
	var ips []string
	for _, ip := range a.Leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if got := strings.Join(ips, ",") + " " + strings.Join(a.Leaf.DNSNames, ","); got != "127.0.0.1,::1 localhost,node-a.example" {
		t.Errorf("names = %s", got)
	}
}

func TestClientCertificateRefusesBadNames(t *testing.T) {
	kp := serverKey(t, 7)
	many := make([]string, MaxClientCertNames+1)
	for i := range many {
		many[i] = net.IPv4(10, 0, byte(i>>8), byte(i)).String()
	}
	for _, tc := range []struct {
		names []string
		want  string
	}{
		{[]string{"0.0.0.0"}, `"0.0.0.0": an unspecified address`},
		{[]string{"::"}, `"::": an unspecified address`},
		{[]string{"bad name"}, `"bad name": not an IP address or a DNS name`},
		{[]string{"-x.example"}, `"-x.example": not an IP`},
		{[]string{"a..b"}, `"a..b": not an IP`},
		{many, "65 names, at most 64"},
	} {
		_, err := ClientCertificate(kp, tc.names)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.40q: %v, want %q", tc.names, err, tc.want)
		}
	}
	if _, err := ClientCertificate(nil, nil); err == nil {
		t.Error("nil key pair accepted")
	}
}
