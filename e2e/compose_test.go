package e2e

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// composePath is the repository's compose file, seen from this package.
const composePath = "../docker-compose.yml"

// problemKind classifies what is wrong with a compose file, so the tests of
// the checker match kinds, not messages.
type problemKind int

const (
	probParse       problemKind = iota // not YAML, or no services
	probServers                        // not exactly 3 nats-* services
	probImage                          // not the official nats image, not pinned, or not the same everywhere
	probCommand                        // a command that cannot be read
	probClusterName                    // missing or different cluster names
	probCluster                        // no --cluster listen URL with a port
	probRoutes                         // routes not naming exactly the other servers on their cluster ports
	probPorts                          // a port not on 127.0.0.1, clashing, or a client port not published
	probNotifier                       // the notifier service missing, not built here, or not depending on the servers
	probNotifierURL                    // the notifier's --url not naming exactly the servers' client ports
)

var problemNames = map[problemKind]string{
	probParse: "parse", probServers: "servers", probImage: "image", probCommand: "command",
	probClusterName: "cluster name", probCluster: "cluster", probRoutes: "routes", probPorts: "ports",
	probNotifier: "notifier", probNotifierURL: "notifier url",
}

func (k problemKind) String() string { return problemNames[k] }

type problem struct {
	kind   problemKind
	detail string
}

func (p problem) String() string { return p.kind.String() + ": " + p.detail }

// composeService is the part of a compose service the checks read. The
// fields that compose allows in several forms are decoded loosely.
type composeService struct {
	Image     string `yaml:"image"`
	Build     any    `yaml:"build"`      // "dir" or {context, dockerfile, dockerfile_inline}
	Command   any    `yaml:"command"`    // "a b c" or [a, b, c]
	Ports     []any  `yaml:"ports"`      // "[ip:]host:container[/proto]" or {target, published, host_ip}
	DependsOn any    `yaml:"depends_on"` // [a, b] or {a: {condition: ...}}
}

// publishedPort is one entry of a service's ports.
type publishedPort struct {
	hostIP    string
	host      int // 0: chosen by Docker
	container int
}

// checkCompose checks a compose file for a NATS cluster of nats-* services
// and a notifier service, dir being the directory of the file (for the
// build context). It returns every problem found.
func checkCompose(data []byte, dir string) []problem {
	var probs []problem
	add := func(k problemKind, format string, args ...any) {
		probs = append(probs, problem{k, fmt.Sprintf(format, args...)})
	}
	var f struct {
		Services map[string]composeService `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		add(probParse, "%v", err)
		return probs
	}
	if len(f.Services) == 0 {
		add(probParse, "no services")
		return probs
	}

	var servers []string
	for name := range f.Services {
		if strings.HasPrefix(name, "nats-") {
			servers = append(servers, name)
		}
	}
	slices.Sort(servers)
	if len(servers) != 3 {
		add(probServers, "nats-* services %v, want 3", servers)
	}

	// Each server's settings, from its command line.
	type server struct {
		clusterName string
		clusterPort int
		clientPort  int
		routes      []string
	}
	srv := map[string]*server{}
	var images []string
	for _, name := range servers {
		s := f.Services[name]
		images = append(images, s.Image)
		if !officialPinned(s.Image) {
			add(probImage, "%s: image %q is not the official nats image with a pinned version", name, s.Image)
		}
		args, err := commandArgs(s.Command)
		if err != nil {
			add(probCommand, "%s: %v", name, err)
			continue
		}
		v := &server{clientPort: 4222}
		srv[name] = v
		if p, ok := flagValue(args, "p", "port"); ok {
			if v.clientPort, err = strconv.Atoi(p); err != nil {
				add(probCommand, "%s: client port %q", name, p)
			}
		}
		if v.clusterName, _ = flagValue(args, "cluster_name"); v.clusterName == "" {
			add(probClusterName, "%s: no --cluster_name", name)
		}
		if c, ok := flagValue(args, "cluster"); !ok {
			add(probCluster, "%s: no --cluster", name)
		} else if u, err := url.Parse(c); err != nil || u.Port() == "" {
			add(probCluster, "%s: --cluster %q has no port", name, c)
		} else {
			v.clusterPort, _ = strconv.Atoi(u.Port())
		}
		if r, ok := flagValue(args, "routes"); !ok {
			add(probRoutes, "%s: no --routes", name)
		} else {
			v.routes = strings.Split(r, ",")
		}
	}
	if len(slices.Compact(slices.Clone(images))) > 1 {
		add(probImage, "the servers use different images %v", images)
	}
	names := map[string]bool{}
	for _, name := range servers {
		if v := srv[name]; v != nil {
			names[v.clusterName] = true
		}
	}
	if len(names) > 1 {
		add(probClusterName, "different cluster names %v", names)
	}

	// Routes: exactly the other servers, each on its cluster port.
	for _, name := range servers {
		v := srv[name]
		if v == nil || v.routes == nil {
			continue
		}
		var hosts []string
		for _, r := range v.routes {
			u, err := url.Parse(strings.TrimSpace(r))
			if err != nil || (u.Scheme != "nats" && u.Scheme != "nats-route") {
				add(probRoutes, "%s: route %q is not nats://<service>:<port>", name, r)
				continue
			}
			peer := srv[u.Hostname()]
			switch {
			case u.Hostname() == name:
				add(probRoutes, "%s: routes to itself", name)
			case peer == nil:
				add(probRoutes, "%s: route %q names no nats service", name, r)
			case u.Port() != strconv.Itoa(peer.clusterPort):
				add(probRoutes, "%s: route %q, but %s's cluster port is %d", name, r, u.Hostname(), peer.clusterPort)
			}
			hosts = append(hosts, u.Hostname())
		}
		slices.Sort(hosts)
		others := slices.DeleteFunc(slices.Clone(servers), func(s string) bool { return s == name })
		if !slices.Equal(hosts, others) {
			add(probRoutes, "%s: routes to %v, want exactly %v", name, hosts, others)
		}
	}

	// Ports: only on the host's loopback, no clashes, every client port published.
	hostPorts := map[int]string{}
	svcNames := slices.Sorted(func(yield func(string) bool) {
		for n := range f.Services {
			if !yield(n) {
				return
			}
		}
	})
	for _, name := range svcNames {
		var containerPorts []int
		for _, raw := range f.Services[name].Ports {
			p, err := parsePort(raw)
			if err != nil {
				add(probPorts, "%s: %v", name, err)
				continue
			}
			if p.hostIP != "127.0.0.1" {
				add(probPorts, "%s: port %v is published on %q, want 127.0.0.1", name, raw, p.hostIP)
			}
			if p.host == 0 {
				add(probPorts, "%s: port %v has no fixed host port", name, raw)
			} else if other, dup := hostPorts[p.host]; dup {
				add(probPorts, "%s: host port %d is also published by %s", name, p.host, other)
			} else {
				hostPorts[p.host] = name
			}
			containerPorts = append(containerPorts, p.container)
		}
		if v := srv[name]; v != nil && !slices.Contains(containerPorts, v.clientPort) {
			add(probPorts, "%s: client port %d is not published", name, v.clientPort)
		}
	}

	// The notifier: built from this repository, after the servers, using all of them.
	n, ok := f.Services["notifier"]
	if !ok {
		add(probNotifier, "no notifier service")
		return probs
	}
	if err := checkBuild(n.Build, dir); err != nil {
		add(probNotifier, "build: %v", err)
	}
	deps := dependsOn(n.DependsOn)
	for _, name := range servers {
		if !slices.Contains(deps, name) {
			add(probNotifier, "does not depend on %s (depends_on %v)", name, deps)
		}
	}
	args, err := commandArgs(n.Command)
	if err != nil {
		add(probCommand, "notifier: %v", err)
		return probs
	}
	u, ok := flagValue(args, "url")
	if !ok {
		add(probNotifierURL, "no --url in %v", args)
		return probs
	}
	var hosts []string
	for _, s := range strings.Split(u, ",") {
		pu, err := url.Parse(strings.TrimSpace(s))
		if err != nil || pu.Scheme != "nats" {
			add(probNotifierURL, "--url entry %q is not nats://<service>:<port>", s)
			continue
		}
		v := srv[pu.Hostname()]
		switch {
		case v == nil:
			add(probNotifierURL, "--url entry %q names no nats service", s)
		case pu.Port() != strconv.Itoa(v.clientPort):
			add(probNotifierURL, "--url entry %q, but %s's client port is %d", s, pu.Hostname(), v.clientPort)
		}
		hosts = append(hosts, pu.Hostname())
	}
	slices.Sort(hosts)
	if !slices.Equal(hosts, servers) {
		add(probNotifierURL, "--url names %v, want exactly %v", hosts, servers)
	}
	return probs
}

// pinnedTag is a release version: 2.10.22, 2.10.22-alpine, 2.10.22-alpine3.20.
var pinnedTag = regexp.MustCompile(`^v?\d+\.\d+\.\d+([-.][0-9A-Za-z.-]+)?$`)

// officialPinned reports whether image is the official nats image with a
// release version tag or a digest.
func officialPinned(image string) bool {
	ref, digest, hasDigest := strings.Cut(image, "@")
	repo, tag, hasTag := strings.Cut(ref, ":")
	switch repo {
	case "nats", "library/nats", "docker.io/nats", "docker.io/library/nats":
	default:
		return false
	}
	if hasDigest {
		return strings.HasPrefix(digest, "sha256:")
	}
	return hasTag && pinnedTag.MatchString(tag)
}

// commandArgs returns a compose command as arguments.
func commandArgs(c any) ([]string, error) {
	switch v := c.(type) {
	case nil:
		return nil, fmt.Errorf("no command")
	case string:
		if strings.ContainsAny(v, `"'\`) {
			return nil, fmt.Errorf("command %q: use the list form instead of shell quoting", v)
		}
		return strings.Fields(v), nil
	case []any:
		args := make([]string, 0, len(v))
		for _, a := range v {
			switch a := a.(type) {
			case string:
				args = append(args, a)
			case int:
				args = append(args, strconv.Itoa(a))
			default:
				return nil, fmt.Errorf("command argument %v (%T) is not a string", a, a)
			}
		}
		return args, nil
	default:
		return nil, fmt.Errorf("command %v (%T) is neither a string nor a list", c, c)
	}
}

// flagValue finds a flag in args in any of the forms Go and nats-server
// accept: -name value, --name value, -name=value, --name=value.
func flagValue(args []string, names ...string) (string, bool) {
	for i, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		k, v, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !slices.Contains(names, k) {
			continue
		}
		if hasValue {
			return v, true
		}
		if i+1 < len(args) {
			return args[i+1], true
		}
		return "", true
	}
	return "", false
}

// parsePort reads one entry of a service's ports, in the short form
// "[ip:][host:]container[/proto]" or the long form.
func parsePort(raw any) (publishedPort, error) {
	var p publishedPort
	switch v := raw.(type) {
	case int:
		p.container = v
		return p, nil
	case string:
		spec, _, _ := strings.Cut(v, "/")
		parts := strings.Split(spec, ":")
		if strings.HasPrefix(spec, "[") { // [::1]:4222:4222
			i := strings.Index(spec, "]")
			p.hostIP = spec[1:i]
			parts = strings.Split(strings.TrimPrefix(spec[i+1:], ":"), ":")
		} else if len(parts) == 3 {
			p.hostIP, parts = parts[0], parts[1:]
		}
		var err error
		switch len(parts) {
		case 1:
			p.container, err = strconv.Atoi(parts[0])
		case 2:
			if p.host, err = strconv.Atoi(parts[0]); err == nil {
				p.container, err = strconv.Atoi(parts[1])
			}
		default:
			err = fmt.Errorf("cannot read")
		}
		if err != nil {
			return p, fmt.Errorf("port %q: %v (ranges are not supported)", v, err)
		}
		return p, nil
	case map[string]any:
		ip, _ := v["host_ip"].(string)
		p.hostIP = ip
		var err error
		if p.container, err = anyInt(v["target"]); err != nil {
			return p, fmt.Errorf("port %v: target: %v", v, err)
		}
		if v["published"] != nil {
			if p.host, err = anyInt(v["published"]); err != nil {
				return p, fmt.Errorf("port %v: published: %v", v, err)
			}
		}
		return p, nil
	default:
		return p, fmt.Errorf("port %v (%T) cannot be read", raw, raw)
	}
}

func anyInt(v any) (int, error) {
	switch v := v.(type) {
	case int:
		return v, nil
	case string:
		return strconv.Atoi(v)
	default:
		return 0, fmt.Errorf("%v (%T) is not a port number", v, v)
	}
}

// dependsOn lists the services of a depends_on, in either form.
func dependsOn(d any) []string {
	var out []string
	switch v := d.(type) {
	case []any:
		for _, s := range v {
			if s, ok := s.(string); ok {
				out = append(out, s)
			}
		}
	case map[string]any:
		for s := range v {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// checkBuild checks that build is this repository (the directory of the
// compose file) and that its Dockerfile exists.
func checkBuild(build any, dir string) error {
	ctx, dockerfile, inline := "", "Dockerfile", false
	switch v := build.(type) {
	case nil:
		return fmt.Errorf("no build: the service must be built from this repository")
	case string:
		ctx = v
	case map[string]any:
		ctx, _ = v["context"].(string)
		if d, ok := v["dockerfile"].(string); ok {
			dockerfile = d
		}
		_, inline = v["dockerfile_inline"]
	default:
		return fmt.Errorf("build %v (%T) cannot be read", build, build)
	}
	if filepath.Clean(ctx) != "." {
		return fmt.Errorf("context %q, want the repository root \".\"", ctx)
	}
	if inline {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, ctx, dockerfile)); err != nil {
		return fmt.Errorf("dockerfile: %w", err)
	}
	return nil
}

// TestComposeFile checks the repository's docker-compose.yml: a 3-node NATS
// cluster on one pinned official image whose routes name each other, client
// ports published on 127.0.0.1 without clashes, and the notifier service
// built from the repository, started after the servers and connected to all
// of them. Docker itself is not needed.
func TestComposeFile(t *testing.T) {
	data, err := os.ReadFile(composePath)
	if err != nil {
		t.Fatalf("the repository must have a docker-compose.yml: %v", err)
	}
	for _, p := range checkCompose(data, filepath.Dir(composePath)) {
		t.Errorf("docker-compose.yml: %v", p)
	}
}

// goodCompose is a compose file that passes every check; the cases of
// TestCheckCompose break it one way each.
const goodCompose = `
services:
  nats-1:
    image: nats:2.10.22-alpine
    command: ["--name", "nats-1", "--cluster_name", "c", "--cluster", "nats://0.0.0.0:6222", "--routes", "nats://nats-2:6222,nats://nats-3:6333"]
    ports: ["127.0.0.1:4222:4222"]
  nats-2:
    image: nats:2.10.22-alpine
    command: "--cluster_name=c --cluster=nats://0.0.0.0:6222 --routes=nats://nats-1:6222,nats://nats-3:6333"
    ports: [{target: 4222, published: 4223, host_ip: 127.0.0.1}]
  nats-3:
    image: nats:2.10.22-alpine
    command: ["-p", "4333", "--cluster_name", "c", "--cluster", "nats://0.0.0.0:6333", "--routes", "nats://nats-1:6222,nats://nats-2:6222"]
    ports: ["127.0.0.1:4224:4333"]
  notifier:
    build: .
    command: ["serve", "--url", "nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4333"]
    depends_on: {nats-1: {condition: service_healthy}, nats-2: {condition: service_healthy}, nats-3: {condition: service_healthy}}
`

// TestCheckCompose shows that checkCompose accepts a good file and catches
// each kind of mistake.
func TestCheckCompose(t *testing.T) {
	// The build context is checked for a Dockerfile.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if probs := checkCompose([]byte(goodCompose), dir); len(probs) != 0 {
		t.Fatalf("good compose file: %v", probs)
	}
	cases := []struct {
		name     string
		old, new string // replace the first old in goodCompose by new
		want     problemKind
	}{
		{"not YAML", "services:", "services: [", probParse},
		{"two servers", "  nats-3:", "  natsx-3:", probServers},
		{"latest", "image: nats:2.10.22-alpine\n    command: \"", "image: nats:latest\n    command: \"", probImage},
		{"no tag", "image: nats:2.10.22-alpine\n    command: \"", "image: nats\n    command: \"", probImage},
		{"other image", "image: nats:2.10.22-alpine\n    command: \"", "image: bitnami/nats:2.10.22\n    command: \"", probImage},
		{"different versions", "image: nats:2.10.22-alpine\n    command: \"", "image: nats:2.10.21-alpine\n    command: \"", probImage},
		{"shell quoting", `"--cluster_name=c `, `"--cluster_name='c' `, probCommand},
		{"no cluster name", `"--cluster_name", "c", "--cluster", "nats://0.0.0.0:6333"`, `"--cluster", "nats://0.0.0.0:6333"`, probClusterName},
		{"other cluster name", "--cluster_name=c ", "--cluster_name=d ", probClusterName},
		{"no cluster port", "--cluster=nats://0.0.0.0:6222", "--cluster=nats://0.0.0.0", probCluster},
		{"route missing", "nats://nats-2:6222,nats://nats-3:6333", "nats://nats-2:6222", probRoutes},
		{"route to self", "nats://nats-2:6222,nats://nats-3:6333", "nats://nats-1:6222,nats://nats-2:6222,nats://nats-3:6333", probRoutes},
		{"route to unknown host", "nats://nats-2:6222,nats://nats-3:6333", "nats://nats-2:6222,nats://nats-4:6333", probRoutes},
		{"route on wrong port", "nats://nats-1:6222,nats://nats-2:6222\"]", "nats://nats-1:6222,nats://nats-2:4222\"]", probRoutes},
		{"route to nats-3 on its client port", "nats://nats-2:6222,nats://nats-3:6333", "nats://nats-2:6222,nats://nats-3:4333", probRoutes},
		{"route not a URL", "nats://nats-2:6222,nats://nats-3:6333", "nats://nats-2:6222,nats://nats-3:63x", probRoutes},
		{"all interfaces", `"127.0.0.1:4222:4222"`, `"4222:4222"`, probPorts},
		{"all interfaces, long form", "host_ip: 127.0.0.1", "host_ip: 0.0.0.0", probPorts},
		{"random host port", `"127.0.0.1:4222:4222"`, `"4222"`, probPorts},
		{"clash", `"127.0.0.1:4224:4333"`, `"127.0.0.1:4222:4333"`, probPorts},
		{"client port not published", `"127.0.0.1:4224:4333"`, `"127.0.0.1:4224:4222"`, probPorts},
		{"no notifier", "  notifier:", "  other:", probNotifier},
		{"image instead of build", "    build: .", "    image: notifier:1.0.0", probNotifier},
		{"build elsewhere", "    build: .", "    build: ./cmd", probNotifier},
		{"missing dependency", "nats-3: {condition: service_healthy}}", "}", probNotifier},
		{"no url", `"serve", "--url"`, `"serve", "--host"`, probNotifierURL},
		{"url misses a server", `"nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4333"`, `"nats://nats-1:4222,nats://nats-2:4222"`, probNotifierURL},
		{"url on wrong port", `nats://nats-3:4333"]`, `nats://nats-3:4222"]`, probNotifierURL},
		{"url on localhost", `"nats://nats-1:4222,`, `"nats://127.0.0.1:4222,`, probNotifierURL},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(goodCompose, c.old) {
				t.Fatalf("bad case: %q not in the good file", c.old)
			}
			probs := checkCompose([]byte(strings.Replace(goodCompose, c.old, c.new, 1)), dir)
			if !slices.ContainsFunc(probs, func(p problem) bool { return p.kind == c.want }) {
				t.Errorf("problems %v, want one of kind %v", probs, c.want)
			}
		})
	}
	// No Dockerfile in the build context.
	if probs := checkCompose([]byte(goodCompose), t.TempDir()); !slices.ContainsFunc(probs, func(p problem) bool { return p.kind == probNotifier }) {
		t.Errorf("no Dockerfile: problems %v, want a notifier problem", probs)
	}
}
