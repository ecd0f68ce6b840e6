package natsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
)

// LocalCluster is n embedded servers clustered on loopback, each with its
// own directory under one parent: for tests, benchmarks and trying a
// cluster on one machine (`fest cluster`).
type LocalCluster struct {
	Servers []*Server
	configs []Config
}

// StartLocalCluster starts n servers named node1..noden under dir, on free
// loopback ports, routed to each other (n == 1 starts one unclustered
// server), and waits until JetStream has a meta leader.
func StartLocalCluster(ctx context.Context, dir string, n int, log *slog.Logger) (*LocalCluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("natsserver: a cluster of %d servers", n)
	}
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c := &LocalCluster{}
	var routes []string
	if n > 1 {
		for i := range n {
			routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(ports[n+i]))
		}
	}
	for i := range n {
		cfg := Config{
			Name:   "node" + strconv.Itoa(i+1),
			Dir:    filepath.Join(dir, "node"+strconv.Itoa(i+1)),
			Port:   ports[i],
			Logger: log,
		}
		if n > 1 {
			cfg.ClusterName = "fest"
			cfg.ClusterPort = ports[n+i]
			cfg.Routes = routes
		}
		c.configs = append(c.configs, cfg)
	}
	for i := range n {
		s, err := Start(c.configs[i])
		if err != nil {
			c.Close()
			return nil, err
		}
		c.Servers = append(c.Servers, s)
	}
	for _, s := range c.Servers {
		if err := s.WaitJetStream(ctx); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// URLs is every running server's client URL, comma-separated, as
// nats.Connect takes it.
func (c *LocalCluster) URLs() string {
	var s string
	for _, srv := range c.Servers {
		if srv == nil {
			continue
		}
		if s != "" {
			s += ","
		}
		s += srv.ClientURL()
	}
	return s
}

// Kill stops server i (its directory stays), as a crash of that node.
func (c *LocalCluster) Kill(i int) error {
	if c.Servers[i] == nil {
		return nil
	}
	err := c.Servers[i].Close()
	c.Servers[i] = nil
	return err
}

// Restart starts server i again on its ports and directory.
func (c *LocalCluster) Restart(i int) error {
	if c.Servers[i] != nil {
		return fmt.Errorf("natsserver: server %d is running", i)
	}
	s, err := Start(c.configs[i])
	if err != nil {
		return err
	}
	c.Servers[i] = s
	return nil
}

// Close stops every server and waits for each.
func (c *LocalCluster) Close() error {
	var errs []error
	for i := range c.Servers {
		errs = append(errs, c.Kill(i))
	}
	return errors.Join(errs...)
}

// freePorts finds n free loopback ports by listening and closing; another
// process could take one in between, which start-up then reports.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("natsserver: find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
