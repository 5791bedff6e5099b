package gateway

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/robonet-mesh/robonet/media"
	"github.com/robonet-mesh/robonet/subjects"
)

// What the dashboard and the browser get of media besides WHEP: the list
// of every node's streams and the player page (ui/media.html, media.js).

// mediaItem is one stream in GET /api/media: the node's StreamInfo, its
// WHEP endpoint and its player page.
type mediaItem struct {
	media.StreamInfo
	WHEP string `json:"whep"`
	Page string `json:"page"`
}

// apiMedia lists every live node's streams.
func (m *Media) apiMedia(w http.ResponseWriter, r *http.Request, p *Principal) {
	ctx, cancel := queryCtx(r)
	defer cancel()
	members, err := p.Client.Nodes(ctx)
	if err != nil {
		writeError(w, meshError(err))
		return
	}
	lctx, lcancel := context.WithTimeout(ctx, 3*time.Second)
	defer lcancel()
	lists, err := media.ListAll(lctx, p.Client, members)
	if err != nil {
		// Some nodes failed: show what answered, log the rest.
		m.log.Debug("media list", "err", err)
	}
	out := []mediaItem{}
	for _, l := range lists {
		chev, perr := subjects.Parse(l.Chevron)
		if perr != nil {
			continue
		}
		for _, s := range l.Streams {
			if !validStream(s.Stream) {
				continue
			}
			s.Chevron = chev.String()
			base := "/media/" + s.Chevron + "/" + s.Stream
			out = append(out, mediaItem{StreamInfo: s, WHEP: base + "/whep", Page: base})
		}
	}
	slices.SortFunc(out, func(a, b mediaItem) int {
		ca, _ := subjects.Parse(a.Chevron)
		cb, _ := subjects.Parse(b.Chevron)
		return cmp.Or(compareChevrons(ca, cb), strings.Compare(a.Stream, b.Stream))
	})
	writeJSON(w, http.StatusOK, out)
}

// compareChevrons orders chevrons token by token, numerically.
func compareChevrons(a, b subjects.Chevron) int {
	x, y := strings.Split(a.String(), "."), strings.Split(b.String(), ".")
	for i := 0; i < len(x) && i < len(y); i++ {
		xi, _ := strconv.Atoi(x[i])
		yi, _ := strconv.Atoi(y[i])
		if c := cmp.Compare(xi, yi); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(x), len(y))
}

// servePage serves the player page (ui/media.html; its script reads the
// chevron and stream from the URL). It holds no data: the offer it posts
// needs a login.
func (m *Media) servePage(w http.ResponseWriter, r *http.Request) {
	if _, aerr := parseTarget(r.PathValue("chevron"), r.PathValue("stream"), "", r.Pattern); aerr != nil {
		w.Header().Set("Cache-Control", "no-store")
		loginPage(w, http.StatusNotFound, aerr.Msg)
		return
	}
	page, err := uiFiles.ReadFile("ui/media.html")
	if err != nil {
		writeError(w, errorf(http.StatusInternalServerError, CodeInternal, "the player page: %v", err))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(page)
}
