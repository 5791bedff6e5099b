package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// DefaultAuthorityEvery is how often a hub's leader republishes its
// effective user records when nothing changed.
const DefaultAuthorityEvery = 3 * time.Second

// AuthorityOptions configure an Authority publisher.
type AuthorityOptions struct {
	// Node is the started node of a hub swarm (cmd/robonet starts the
	// publisher only on hubs).
	Node *node.Node
	// Every is the republish interval; zero: DefaultAuthorityEvery.
	Every time.Duration
	// Logger receives its logs; nil discards them.
	Logger *slog.Logger
}

// Authority hands a hub swarm's identities down the tree: while its node
// holds the swarm-leader lease it publishes node.AuthorityRecords (its
// swarm's own user records and every set inherited from above) on
// rn.dir.<swarm>.users, on change and every Every, signed as the node.
// Swarms below verify each record against their pinned founder keys
// (node/fedauth.go), so the signature only tells who carried it.
type Authority struct {
	opts  AuthorityOptions
	n     *node.Node
	subj  string
	log   *slog.Logger
	nc    *nats.Conn
	sign  *mesh.Signer
	stop  context.CancelFunc
	wg    sync.WaitGroup
	once  sync.Once
	check time.Duration
}

// NewAuthority validates opts; it starts nothing.
func NewAuthority(opts AuthorityOptions) (*Authority, error) {
	if opts.Node == nil {
		return nil, errors.New("authority: no node")
	}
	sw, err := subjects.NodeSwarm(opts.Node.Chevron())
	if err != nil {
		return nil, fmt.Errorf("authority: node %s: %w", opts.Node.Chevron(), err)
	}
	subj, _ := subjects.FedUsers(sw)
	if opts.Every < 0 {
		return nil, errors.New("authority: negative interval")
	}
	if opts.Every == 0 {
		opts.Every = DefaultAuthorityEvery
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Authority{opts: opts, n: opts.Node, subj: subj, log: log, check: min(250*time.Millisecond, opts.Every)}, nil
}

// Start opens the feature connection and the publishing loop.
func (a *Authority) Start(ctx context.Context) error {
	nc, err := a.n.FeatureConn("authority")
	if err != nil {
		return fmt.Errorf("authority: %w", err)
	}
	a.nc, a.sign = nc, a.n.Signer()
	lctx, cancel := context.WithCancel(context.Background())
	a.stop = cancel
	a.wg.Add(1)
	go a.loop(lctx)
	return nil
}

// Shutdown stops publishing and closes the connection. Idempotent.
func (a *Authority) Shutdown(ctx context.Context) error {
	a.once.Do(func() {
		if a.stop == nil {
			return
		}
		a.stop()
		a.wg.Wait()
		a.nc.Close()
	})
	return nil
}

func (a *Authority) loop(ctx context.Context) {
	defer a.wg.Done()
	t := time.NewTicker(a.check)
	defer t.Stop()
	var sentVer uint64
	var sentAt time.Time
	for {
		if a.n.IsLeader() {
			if v := a.n.AuthorityVersion(); v != sentVer || time.Since(sentAt) >= a.opts.Every {
				if err := a.publish(); err != nil {
					a.log.Warn("authority: publish users", "subject", a.subj, "err", err)
				}
				sentVer, sentAt = v, time.Now()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Authority) publish() error {
	data, err := json.Marshal(a.n.AuthorityRecords())
	if err != nil {
		return err
	}
	if len(data) > wire.MaxMessage {
		return fmt.Errorf("%d bytes of user records, limit %d: swarms below keep what they had", len(data), wire.MaxMessage)
	}
	m := &nats.Msg{Subject: a.subj, Data: data}
	if err := a.sign.SignMsg(m); err != nil {
		return err
	}
	return a.nc.PublishMsg(m)
}
