package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// natsContext is the part of a nats CLI context file that says how to
// connect. The nats CLI (natscli v0.5.0, through jsm.go's natscontext)
// writes one JSON file per context under ~/.config/nats/context/ and the
// selected context's name to ~/.config/nats/context.txt ($XDG_CONFIG_HOME
// instead of ~/.config when set). The file is read here with encoding/json:
// natscontext would bring its JetStream manager and expression language into
// this module for a dozen fields.
type natsContext struct {
	name string
	path string

	URL         string `json:"url"`
	Token       string `json:"token"`
	User        string `json:"user"`
	Password    string `json:"password"`
	Creds       string `json:"creds"`
	NKey        string `json:"nkey"`
	Cert        string `json:"cert"`
	Key         string `json:"key"`
	CA          string `json:"ca"`
	TLSFirst    bool   `json:"tls_first"`
	UserJWT     string `json:"user_jwt"`
	UserSeed    string `json:"user_seed"`
	InboxPrefix string `json:"inbox_prefix"`

	// Settings this command cannot honour: a context using them is refused
	// rather than half applied.
	NSC          string `json:"nsc"`
	SocksProxy   string `json:"socks_proxy"`
	WinCertStore string `json:"windows_cert_store"`
}

// maxContextFile bounds a context file; real ones are well under 4 KiB.
const maxContextFile = 1 << 20

// natsConfigDir is where the nats CLI keeps its contexts.
func natsConfigDir() (string, error) {
	if x := os.Getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "nats"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".config", "nats"), nil
}

// selectedContextName is the context the nats CLI has selected ("nats
// context select"), or "" when none is.
func selectedContextName() (string, error) {
	dir, err := natsConfigDir()
	if err != nil {
		return "", nil // no home: no context
	}
	data, err := os.ReadFile(filepath.Join(dir, "context.txt"))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("the selected nats context: %w", err)
	}
	return strings.TrimSpace(string(data)), nil
}

// loadContext reads the context called name, or the context file name when
// it is the path of a .json file (as the nats CLI accepts).
func loadContext(name string) (*natsContext, error) {
	path := name
	if !strings.HasSuffix(name, ".json") {
		if name == "" || strings.ContainsAny(name, `/\`) || strings.Contains(name, "..") {
			return nil, fmt.Errorf("context %q: not a context name", name)
		}
		dir, err := natsConfigDir()
		if err != nil {
			return nil, fmt.Errorf("context %q: %w", name, err)
		}
		path = filepath.Join(dir, "context", name+".json")
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("context %q: no such context (%s does not exist)", name, path)
		}
		return nil, fmt.Errorf("context %q: %w", name, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxContextFile+1))
	if err != nil {
		return nil, fmt.Errorf("context %q: %w", name, err)
	}
	if len(data) > maxContextFile {
		return nil, fmt.Errorf("context %q: %s is larger than %d bytes", name, path, maxContextFile)
	}
	c := &natsContext{name: name, path: path}
	if err := json.Unmarshal(data, c); err != nil {
		// The JSON error quotes no value, so no secret reaches the message.
		return nil, fmt.Errorf("context %q: %s is not a nats context file: %v", name, path, jsonErrorWithoutValue(err))
	}
	for field, v := range map[string]string{"nsc": c.NSC, "socks_proxy": c.SocksProxy, "windows_cert_store": c.WinCertStore} {
		if v != "" {
			return nil, fmt.Errorf("context %q: setting %q is not supported by this command", name, field)
		}
	}
	for _, p := range []*string{&c.Creds, &c.NKey, &c.Cert, &c.Key, &c.CA} {
		v, err := contextPath(*p)
		if err != nil {
			return nil, fmt.Errorf("context %q: %w", name, err)
		}
		*p = v
	}
	if (c.UserJWT == "") != (c.UserSeed == "") {
		return nil, fmt.Errorf("context %q: user_jwt and user_seed go together", name)
	}
	return c, nil
}

// contextPath expands a file setting of a context as the nats CLI does: a
// leading ~, $VARIABLES, and the file:// form of its credential references.
// The other reference schemes (op://, nsc://, env://, data:) are refused.
func contextPath(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	if rest, ok := strings.CutPrefix(p, "file://"); ok {
		p = rest
	} else if i := strings.Index(p, "://"); i > 0 || strings.HasPrefix(p, "data:") {
		scheme := p
		if i > 0 {
			scheme = p[:i+3]
		} else {
			scheme = "data:"
		}
		return "", fmt.Errorf("credential reference %s...: only file paths and file:// are supported", scheme)
	}
	p = os.ExpandEnv(p)
	if p == "~" || strings.HasPrefix(p, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		p = filepath.Join(home, p[1:])
	}
	return p, nil
}

// jsonErrorWithoutValue describes a JSON decoding error by its position and
// kind only.
func jsonErrorWithoutValue(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q: want a %v", typ.Field, typ.Type)
	}
	return "invalid JSON"
}
