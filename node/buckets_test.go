package node_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/node"
)

// bucketStreams are the streams behind every bucket of a swarm.
var bucketStreams = []string{
	"KV_" + node.BucketNodes, "KV_" + node.BucketLeader, "KV_" + node.BucketMacros, "KV_" + node.BucketConfig,
	"KV_" + node.BucketApprovals, "KV_" + node.BucketUsers, "KV_" + node.BucketTokens, "KV_" + node.BucketRevoked,
	"OBJ_" + node.BucketFiles,
}

// streamReplicas reads every bucket stream's configured replicas through
// JetStream.
func streamReplicas(ctx context.Context, js jetstream.JetStream) (map[string]int, error) {
	out := map[string]int{}
	for _, name := range bucketStreams {
		st, err := js.Stream(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
		out[name] = info.Config.Replicas
	}
	return out, nil
}

// replicasCurrent fails while any bucket stream has a follower that is
// offline or not caught up with its leader.
func replicasCurrent(ctx context.Context, js jetstream.JetStream) error {
	for _, name := range bucketStreams {
		st, err := js.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		if info.Cluster == nil {
			continue
		}
		for _, p := range info.Cluster.Replicas {
			if !p.Current || p.Offline {
				return fmt.Errorf("stream %s: replica %s not current (lag %d)", name, p.Name, p.Lag)
			}
		}
	}
	return nil
}

// setReplicas changes a stream's replicas as an admin would, with the
// nats CLI or the JetStream API.
func setReplicas(ctx context.Context, js jetstream.JetStream, name string, r int) error {
	st, err := js.Stream(ctx, name)
	if err != nil {
		return err
	}
	cfg := st.CachedInfo().Config
	cfg.Replicas = r
	_, err = js.UpdateStream(ctx, cfg)
	return err
}

// Every bucket, KV and object store, ends R3 in a 3-node swarm, and status
// reports the lowest replica count over all of them. A bucket an admin
// forces back to R1 is raised again by the leader; while a server is down
// (so the leader cannot raise it) status names it as behind, until the
// server is back and the leader raises it.
func TestEveryBucketReplicatedAndBehindShownInStatus(t *testing.T) {
	s := testmesh.Start(t, 3)
	s.WaitAlive(30 * time.Second)
	c := s.Client(0)
	js, err := jetstream.New(c.Conn())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	allR3 := func() error {
		reps, err := streamReplicas(ctx, js)
		if err != nil {
			return err
		}
		// Configured R3 is not enough before a server is killed: a
		// stream just raised from R1 has followers still catching up,
		// and they cannot elect a leader without the one that has the
		// data (JetStream stalls the stream until it is back).
		if err := replicasCurrent(ctx, js); err != nil {
			return err
		}
		for name, r := range reps {
			if r != 3 {
				return fmt.Errorf("%s is R%d", name, r)
			}
		}
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		if st.Replicas != 3 || len(st.Behind) != 0 {
			return fmt.Errorf("status: replicas %d, behind %v", st.Replicas, st.Behind)
		}
		return nil
	}
	testmesh.CheckFor(t, 60*time.Second, 200*time.Millisecond, allR3)

	// All three up: rn_users forced to R1 is raised again.
	users := "KV_" + node.BucketUsers
	if err := setReplicas(ctx, js, users, 1); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	testmesh.CheckFor(t, 60*time.Second, 200*time.Millisecond, allR3)
	t.Logf("rn_users forced to R1 -> R3 again in %v", time.Since(started).Round(time.Millisecond))

	// One server down: the leader cannot raise rn_files, and status says so.
	down := 2
	if s.Node(down).IsLeader() {
		down = 1
	}
	s.Kill(down)
	files := "OBJ_" + node.BucketFiles
	testmesh.CheckFor(t, 60*time.Second, 200*time.Millisecond, func() error {
		reps, err := streamReplicas(ctx, js)
		if err != nil {
			return err
		}
		if reps[files] != 1 {
			// Forced again if the leader raised it before it saw the
			// server go.
			if err := setReplicas(ctx, js, files, 1); err != nil {
				return err
			}
		}
		st, err := c.Status(ctx)
		if err != nil {
			return err
		}
		if st.Replicas != 1 || !slices.Equal(st.Behind, []string{node.BucketFiles}) {
			return fmt.Errorf("status: replicas %d, behind %v; streams %v", st.Replicas, st.Behind, reps)
		}
		return nil
	})
	s.Restart(down)
	started = time.Now()
	testmesh.CheckFor(t, 90*time.Second, 200*time.Millisecond, allR3)
	t.Logf("server back -> rn_files raised and status clean in %v", time.Since(started).Round(time.Millisecond))
}
