// Command syncalways prints what robonet's SyncAlways setting costs: the
// latency of a JetStream KV put on an R3 bucket of a 3-server cluster with
// nats-server's default lazy fsync (every 2 minutes) and with sync always
// (every write fsynced before it is acknowledged), which every robonet node
// runs with. The servers are embedded in this process on 127.0.0.1, with
// their stores in a temp dir on the machine's disk (removed at the end), so
// the figures are the fsync cost of that disk plus loopback, not a WAN.
//
// It measures; it asserts nothing.
//
// Usage, from inside the module:
//
//	go run ./bench/syncalways [-puts 2000] [-dir /path/on/the/disk/to/measure]
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	puts := flag.Int("puts", 2000, "KV puts per setting (one at a time, each awaited)")
	dir := flag.String("dir", "", "parent of the temp store dirs (default: the system temp dir)")
	flag.Parse()
	fmt.Printf("R3 KV put latency, 3 embedded servers, %d sequential puts of 100 bytes per setting\n", *puts)
	fmt.Printf("%-28s %8s %8s %8s %8s\n", "setting", "p50", "p90", "p99", "max")
	for _, sync := range []bool{false, true} {
		lat, err := measure(*dir, sync, *puts)
		name := "lazy fsync (default, 2 min)"
		if sync {
			name = "sync always (robonet)"
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			os.Exit(1)
		}
		slices.Sort(lat)
		q := func(p float64) string {
			return fmt.Sprintf("%.2fms", float64(lat[int(p*float64(len(lat)-1))])/1e6)
		}
		fmt.Printf("%-28s %8s %8s %8s %8s\n", name, q(0.5), q(0.9), q(0.99), q(1))
	}
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	var out []int
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

func measure(parent string, sync bool, puts int) ([]time.Duration, error) {
	tmp, err := os.MkdirTemp(parent, "syncalways")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	var routes []*url.URL
	for _, p := range ports {
		u, _ := url.Parse("nats-route://127.0.0.1:" + strconv.Itoa(p))
		routes = append(routes, u)
	}
	var srvs []*server.Server
	defer func() {
		for _, s := range srvs {
			s.Shutdown()
			s.WaitForShutdown()
		}
	}()
	for i, p := range ports {
		o := &server.Options{
			ServerName: fmt.Sprintf("s%d", i), Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
			JetStream: true, StoreDir: filepath.Join(tmp, strconv.Itoa(i)), SyncAlways: sync,
			Cluster: server.ClusterOpts{Name: "bench", Host: "127.0.0.1", Port: p}, Routes: routes,
		}
		s, err := server.NewServer(o)
		if err != nil {
			return nil, err
		}
		s.Start()
		srvs = append(srvs, s)
	}
	for _, s := range srvs {
		if !s.ReadyForConnections(30 * time.Second) {
			return nil, fmt.Errorf("server %s not ready", s.Name())
		}
	}
	nc, err := nats.Connect(srvs[0].ClientURL())
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var kv jetstream.KeyValue
	for deadline := time.Now().Add(60 * time.Second); ; {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		kv, err = js.CreateKeyValue(actx, jetstream.KeyValueConfig{Bucket: "bench", Replicas: 3})
		acancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("create R3 bucket: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	val := make([]byte, 100)
	for i := 0; i < 50; i++ { // warm up: leader elected, connections settled
		if _, err := kv.Put(ctx, "warm", val); err != nil {
			return nil, err
		}
	}
	lat := make([]time.Duration, 0, puts)
	for i := 0; i < puts; i++ {
		t0 := time.Now()
		if _, err := kv.Put(ctx, "k"+strconv.Itoa(i%64), val); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(t0))
	}
	return lat, nil
}
