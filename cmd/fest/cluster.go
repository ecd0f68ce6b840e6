package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clusterNodesMax bounds fest cluster's children: it is for trying a cluster
// on one machine, where more nodes than cores only measure contention.
const clusterNodesMax = 9

// clusterStopTimeout is how long a child has to stop after SIGTERM before
// it is killed.
const clusterStopTimeout = 30 * time.Second

// clusterNode is one child of fest cluster and the ports it was given.
type clusterNode struct {
	name                            string
	httpPort, natsPort, clusterPort int
	cmd                             *exec.Cmd
	exited                          bool
}

// nodeExit is a child's end.
type nodeExit struct {
	node *clusterNode
	err  error
}

// runCluster starts a local cluster on loopback: n child processes, each a
// fest serve --journal nats with its own embedded NATS server routed to the
// others, sharing one set of tokens. It prints the nodes' URLs, forwards
// SIGINT/SIGTERM to the children as SIGTERM and waits for them. A child
// that exits early is reported and the others keep running.
func runCluster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nodes := fs.Int("nodes", 3, "nodes to start (1 to "+strconv.Itoa(clusterNodesMax)+")")
	data := fs.String("data", "./fest-cluster", "parent directory of the nodes' data directories (<data>/node-1, ...)")
	httpPort := fs.Int("http-port", 0, "first node's HTTP port, the others following it; 0: free ports")
	natsPort := fs.Int("nats-port", 0, "first node's NATS client port, the others following it; 0: free ports")
	clusterPort := fs.Int("nats-cluster-port", 0, "first node's NATS route port, the others following it; 0: free ports")
	partitions := fs.Int("partitions", 0, "partitions of a new cluster; 0: the default")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("cluster: unexpected argument %q", fs.Arg(0))
	}
	if *nodes < 1 || *nodes > clusterNodesMax {
		return fmt.Errorf("cluster: --nodes %d outside 1..%d", *nodes, clusterNodesMax)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cluster: find the fest binary: %w", err)
	}
	if err := os.MkdirAll(*data, 0o755); err != nil {
		return fmt.Errorf("cluster: create %s: %w", *data, err)
	}
	// The nodes share their tokens: a client may send any request to any
	// node, which forwards it with the caller's credentials.
	tokens := map[string]string{}
	for _, role := range []string{"admin", "storefront", "carrier"} {
		tok, _, _, err := loadOrCreateToken(*data, role)
		if err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		tokens[role] = tok
	}
	ports, err := clusterPorts(*nodes, *httpPort, *natsPort, *clusterPort)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	cluster := make([]*clusterNode, *nodes)
	for i := range cluster {
		cluster[i] = &clusterNode{name: "node-" + strconv.Itoa(i+1), httpPort: ports[0][i], natsPort: ports[1][i], clusterPort: ports[2][i]}
	}
	exits := make(chan nodeExit, len(cluster))
	var out sync.Mutex // one child's line at a time on stdout
	for i, n := range cluster {
		var routes []string
		for j, m := range cluster {
			if j != i {
				routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(m.clusterPort))
			}
		}
		args := []string{"serve", "--journal", "nats", "--node", n.name,
			"--addr", "127.0.0.1:" + strconv.Itoa(n.httpPort),
			"--data", filepath.Join(*data, n.name),
			"--nats-listen", "127.0.0.1:" + strconv.Itoa(n.natsPort),
			"--admin-token", tokens["admin"], "--storefront-token", tokens["storefront"], "--carrier-token", tokens["carrier"]}
		if *nodes > 1 {
			args = append(args, "--nats-cluster-listen", "127.0.0.1:"+strconv.Itoa(n.clusterPort), "--nats-routes", strings.Join(routes, ","))
		}
		if *partitions > 0 {
			args = append(args, "--partitions", strconv.Itoa(*partitions))
		}
		n.cmd = exec.Command(self, args...)
		n.cmd.Env = childPprofEnv(i)
		pipe, err := n.cmd.StdoutPipe()
		if err != nil {
			return fmt.Errorf("cluster: %s: %w", n.name, err)
		}
		n.cmd.Stderr = n.cmd.Stdout
		if err := n.cmd.Start(); err != nil {
			stopCluster(cluster[:i], exits, stderr)
			return fmt.Errorf("cluster: start %s: %w", n.name, err)
		}
		copied := make(chan struct{})
		go func() {
			defer close(copied)
			prefixLines(pipe, "["+n.name+"] ", stdout, &out)
		}()
		go func() {
			<-copied // Wait closes the pipe: read it to its end first
			exits <- nodeExit{n, n.cmd.Wait()}
		}()
	}
	out.Lock()
	fmt.Fprintf(stdout, "fest cluster: %d nodes on loopback, data in %s\n", *nodes, *data)
	for _, n := range cluster {
		fmt.Fprintf(stdout, "  %s  http://127.0.0.1:%d  (nats://127.0.0.1:%d)\n", n.name, n.httpPort, n.natsPort)
	}
	fmt.Fprintf(stdout, "  tokens in %s; any node takes any request; GET /v1/cluster shows who owns what\n", filepath.Join(*data, "tokens"))
	out.Unlock()

	var failed []string
	for running := len(cluster); running > 0; running-- {
		select {
		case <-ctx.Done():
			stopCluster(cluster, exits, stderr)
			return nil
		case x := <-exits:
			x.node.exited = true
			out.Lock()
			fmt.Fprintf(stderr, "fest cluster: %s exited: %v\n", x.node.name, x.err)
			out.Unlock()
			if x.err != nil {
				failed = append(failed, x.node.name)
			}
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("cluster: %s failed", strings.Join(failed, ", "))
	}
	return nil
}

// stopCluster sends SIGTERM to every child still running and waits for
// them, up to clusterStopTimeout, then kills what is left.
func stopCluster(cluster []*clusterNode, exits <-chan nodeExit, stderr io.Writer) {
	running := 0
	for _, n := range cluster {
		if !n.exited {
			n.cmd.Process.Signal(syscall.SIGTERM)
			running++
		}
	}
	deadline := time.After(clusterStopTimeout)
	for running > 0 {
		select {
		case x := <-exits:
			x.node.exited = true
			running--
		case <-deadline:
			for _, n := range cluster {
				if !n.exited {
					fmt.Fprintf(stderr, "fest cluster: %s did not stop within %v; killing it\n", n.name, clusterStopTimeout)
					n.cmd.Process.Kill()
				}
			}
			deadline = nil
		}
	}
}

// prefixLines copies r to w line by line, each line prefixed.
func prefixLines(r io.Reader, prefix string, w io.Writer, mu *sync.Mutex) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		mu.Lock()
		fmt.Fprintf(w, "%s%s\n", prefix, sc.Text())
		mu.Unlock()
	}
}

// clusterPorts returns, for HTTP, NATS clients and NATS routes, n ports
// each: consecutive from the given first port, or free ones where it is 0.
func clusterPorts(n int, first ...int) ([3][]int, error) {
	var out [3][]int
	for k, f := range first {
		for i := 0; i < n; i++ {
			if f != 0 {
				out[k] = append(out[k], f+i)
				continue
			}
			p, err := freePort()
			if err != nil {
				return out, err
			}
			out[k] = append(out[k], p)
		}
	}
	return out, nil
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before the child listens; the child then fails to start and
// says so.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// childPprofEnv is the environment of the i-th child (from 0): the
// launcher's own, except that FEST_PPROF_ADDR host:port, which the
// launcher serves itself, becomes host:port+1+i, so that every node can be
// profiled on a port of its own.
func childPprofEnv(i int) []string {
	env := os.Environ()
	a := os.Getenv("FEST_PPROF_ADDR")
	host, port, err := net.SplitHostPort(a)
	n, perr := strconv.Atoi(port)
	if a == "" || err != nil || perr != nil {
		return env
	}
	for k, kv := range env {
		if strings.HasPrefix(kv, "FEST_PPROF_ADDR=") {
			env[k] = "FEST_PPROF_ADDR=" + net.JoinHostPort(host, strconv.Itoa(n+1+i))
		}
	}
	return env
}
