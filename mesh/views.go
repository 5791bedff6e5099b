package mesh

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// ApprovalView is one approval as `robonet approvals --json`, `approve
// --json` and the gateway's /api/approvals show it: the record's fields,
// signatures replaced by the approvers whose signature verifies.
type ApprovalView struct {
	ID         string          `json:"id"`
	Verb       string          `json:"verb"`
	Args       json.RawMessage `json:"args,omitempty"`
	ArgsDigest string          `json:"args_digest"`
	Requester  string          `json:"requester"`
	From       string          `json:"from,omitempty"`
	Selector   string          `json:"selector,omitempty"`
	Need       int             `json:"need"`
	Count      int             `json:"count"`
	Approvers  []string        `json:"approvers"`
	Created    time.Time       `json:"created,omitzero"`
	Expires    time.Time       `json:"expires"`
	Expired    bool            `json:"expired"`
	Satisfied  bool            `json:"satisfied"`
	// AlreadyApproved: approve found this key's approval already there.
	AlreadyApproved bool `json:"already_approved,omitempty"`
}

// ViewApproval is r's view at now.
func ViewApproval(r ApprovalRecord, now time.Time) ApprovalView {
	v := ApprovalView{ID: r.ID, Verb: r.Verb, ArgsDigest: r.ArgsDigest, Requester: r.Requester, From: r.From,
		Selector: r.Selector, Need: r.Need, Count: r.Count(), Approvers: r.Approvers(), Created: r.Created,
		Expires: r.Expires, Expired: !now.Before(r.Expires)}
	if len(r.Args) > 0 {
		v.Args = r.Args
	}
	if v.Approvers == nil {
		v.Approvers = []string{}
	}
	v.Satisfied = v.Count >= v.Need
	return v
}

// ApprovalViews lists the approvals in the bucket (expired ones only with
// all), newest first, as views at now; skipped are the records left out for
// failing their checks.
func (c *Client) ApprovalViews(ctx context.Context, all bool, now time.Time) (views []ApprovalView, skipped []error, err error) {
	ap, err := c.Approvals(ctx)
	if err != nil {
		return nil, nil, err
	}
	recs, skipped, err := ap.Records(ctx, all)
	if err != nil {
		return nil, skipped, err
	}
	views = make([]ApprovalView, 0, len(recs))
	for _, r := range recs {
		views = append(views, ViewApproval(r, now))
	}
	return views, skipped, nil
}

// AlertsView is the swarm's Sentinel alerts as `robonet alerts --json` and
// the gateway's /api/alerts show them.
type AlertsView struct {
	Nodes  int          `json:"nodes"` // how many nodes answered
	Alerts []wire.Alert `json:"alerts"`
	// Dropped answers (bad signature, not a member's key); not shown.
	Dropped int `json:"-"`
}

// Alerts asks every live one of members (from Nodes) for the alerts it
// sees now, waiting up to wait, and returns them by peer, highest score
// first. An answer that carries an error is the error.
func (c *Client) Alerts(ctx context.Context, members []wire.Member, wait time.Duration) (AlertsView, error) {
	got, err := c.QueryAll(ctx, subjects.QueryAlerts, nil, members, wait)
	if err != nil {
		return AlertsView{}, fmt.Errorf("%s: %w", subjects.QueryAlerts, err)
	}
	v := AlertsView{Alerts: []wire.Alert{}, Dropped: got.Dropped}
	for _, a := range got.Answers {
		if a.Error != nil {
			return v, fmt.Errorf("%s: %s (%s): %w", subjects.QueryAlerts, a.Name, a.Chevron, a.Error)
		}
		var r struct {
			Alerts []wire.Alert `json:"alerts"`
		}
		if wire.Decode(a.Data, &r) == nil {
			v.Nodes++
			v.Alerts = append(v.Alerts, r.Alerts...)
		}
	}
	sort.Slice(v.Alerts, func(i, j int) bool {
		if v.Alerts[i].Peer != v.Alerts[j].Peer {
			return subjects.CompareText(v.Alerts[i].Peer, v.Alerts[j].Peer) < 0
		}
		return v.Alerts[i].Score > v.Alerts[j].Score
	})
	return v, nil
}
