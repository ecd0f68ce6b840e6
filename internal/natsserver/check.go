package natsserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// ErrNotSynchronous is returned by CheckSync when a server fsyncs on a
// timer instead of after every write: JetStream then acknowledges writes
// that a power failure of a quorum can take back.
var ErrNotSynchronous = errors.New("nats server does not fsync every write (sync_interval is not always)")

// ErrUnverified is returned by CheckSync when no server answered: the
// connection is not in the system account and no monitoring URL was given.
var ErrUnverified = errors.New("nats server sync setting could not be verified")

// ServerSync is one server's fsync setting as it reports it.
type ServerSync struct {
	Name string
	// SyncAlways is true when the server fsyncs after every write.
	SyncAlways bool
	// SyncInterval is the background fsync period (two minutes by
	// default), which is all there is when SyncAlways is false.
	SyncInterval time.Duration
}

// varz is the part of the server's /varz (and $SYS VARZ) answer read here.
type varz struct {
	ServerName string `json:"server_name"`
	JetStream  struct {
		Config *struct {
			SyncInterval time.Duration `json:"sync_interval"`
			SyncAlways   bool          `json:"sync_always"`
		} `json:"config"`
	} `json:"jetstream"`
}

// sysVarzSubject asks every server of the cluster for its varz; only a
// connection in the system account gets answers.
const sysVarzSubject = "$SYS.REQ.SERVER.PING.VARZ"

// serversMax bounds how many answers CheckSync collects (a NATS cluster of
// fest is a handful of servers; past this the check stops listening).
const serversMax = 64

// CheckSync asks external servers for their fsync setting: through the
// system account on nc when it is allowed there (every server answers),
// and through each monitoring URL given ("http://host:8222"). It waits up
// to wait for answers. It returns what it learned and ErrNotSynchronous if
// any server is not synchronous, or ErrUnverified if none answered.
func CheckSync(ctx context.Context, nc *nats.Conn, monitorURLs []string, wait time.Duration) ([]ServerSync, error) {
	var found []ServerSync
	var errs []error
	if nc != nil {
		got, err := sysVarz(ctx, nc, wait)
		found = append(found, got...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, u := range monitorURLs {
		got, err := httpVarz(ctx, u, wait)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		found = append(found, got)
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("natsserver: check sync: %w: %w", ErrUnverified, errors.Join(errs...))
	}
	for _, s := range found {
		if !s.SyncAlways {
			return found, fmt.Errorf("natsserver: check sync: server %s fsyncs every %v: %w", s.Name, s.SyncInterval, ErrNotSynchronous)
		}
	}
	return found, nil
}

func sysVarz(ctx context.Context, nc *nats.Conn, wait time.Duration) ([]ServerSync, error) {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("subscribe for varz: %w", err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(sysVarzSubject, inbox, nil); err != nil {
		return nil, fmt.Errorf("request varz: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var found []ServerSync
	for len(found) < serversMax {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			break // the wait is over: whoever answered has answered
		}
		var resp struct {
			Data  varz `json:"data"`
			Error *struct {
				Description string `json:"description"`
			} `json:"error"`
		}
		if err := json.Unmarshal(m.Data, &resp); err != nil {
			return found, fmt.Errorf("decode varz: %w", err)
		}
		if resp.Error != nil {
			return found, fmt.Errorf("varz: %s", resp.Error.Description)
		}
		if s, ok := resp.Data.sync(); ok {
			found = append(found, s)
		}
	}
	if len(found) == 0 {
		return nil, errors.New("no server answered on the system account (the connection is not in it)")
	}
	return found, nil
}

func httpVarz(ctx context.Context, base string, wait time.Duration) (ServerSync, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/varz", nil)
	if err != nil {
		return ServerSync{}, fmt.Errorf("varz from %s: %w", base, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ServerSync{}, fmt.Errorf("varz from %s: %w", base, err)
	}
	defer resp.Body.Close()
	// A varz answer is a few KiB; the bound keeps a wrong URL from
	// feeding the check a large body.
	const varzBytesMax = 1 << 20
	b, err := io.ReadAll(io.LimitReader(resp.Body, varzBytesMax))
	if err != nil || resp.StatusCode != http.StatusOK {
		return ServerSync{}, fmt.Errorf("varz from %s: status %d: %v", base, resp.StatusCode, err)
	}
	s, err := parseVarz(b)
	if err != nil {
		return ServerSync{}, fmt.Errorf("varz from %s: %w", base, err)
	}
	return s, nil
}

// parseVarz reads a server's sync setting from its /varz body.
func parseVarz(b []byte) (ServerSync, error) {
	var v varz
	if err := json.Unmarshal(b, &v); err != nil {
		return ServerSync{}, fmt.Errorf("decode varz: %w", err)
	}
	s, ok := v.sync()
	if !ok {
		return ServerSync{}, errors.New("jetstream is not enabled there")
	}
	return s, nil
}

func (v varz) sync() (ServerSync, bool) {
	c := v.JetStream.Config
	if c == nil {
		return ServerSync{}, false
	}
	return ServerSync{Name: v.ServerName, SyncAlways: c.SyncAlways, SyncInterval: c.SyncInterval}, true
}

// WarnSync logs the outcome of CheckSync loudly: an error-level line for a
// server that is not synchronous (acknowledged orders can be lost in a
// power failure) and a warning when nothing could be verified. It is for
// start-up, where fest goes on with an external server it cannot change.
func WarnSync(log *slog.Logger, found []ServerSync, err error) {
	switch {
	case errors.Is(err, ErrNotSynchronous):
		for _, s := range found {
			if !s.SyncAlways {
				log.Error("NATS SERVER IS NOT SYNCHRONOUS: acknowledged orders can be lost in a power failure; set jetstream { sync_interval: always } on every server",
					"server", s.Name, "sync_interval", s.SyncInterval)
			}
		}
	case err != nil:
		log.Warn("could not verify that the NATS servers fsync every write; make sure jetstream { sync_interval: always } is set on every server",
			"err", err)
	default:
		log.Info("nats servers fsync every write", "servers", len(found))
	}
}
