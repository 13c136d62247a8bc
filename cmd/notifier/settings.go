package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsnotifier/notifier/internal/redact"
)

// maxKeyFile bounds every credentials, key or certificate file read.
const maxKeyFile = 1 << 20

// setting is one connection setting and where it came from, for messages:
// "--creds", "context \"prod\" creds", "$NATS_CREDS".
type setting struct {
	value string
	from  string
}

// credentials are the authentication settings of one source.
type credentials struct {
	user, password, token, creds, nkey setting
	userJWT, userSeed                  setting // contexts only
}

func (c *credentials) any() bool {
	for _, s := range []setting{c.user, c.password, c.token, c.creds, c.nkey, c.userJWT} {
		if s.value != "" {
			return true
		}
	}
	return false
}

// resolved are the connection settings in force.
type resolved struct {
	urls       string
	opts       []nats.Option
	clientCert bool
}

// resolve merges flags, the nats context and the environment (in that
// order of precedence) and validates the result.
func (c *connFlags) resolve() (resolved, error) {
	var r resolved
	ctx, err := c.selectContext()
	if err != nil {
		return r, err
	}
	// pick returns the flag if given, else the context's value, else the
	// environment's.
	pick := func(flagName, flagVal, ctxField, ctxVal, env string) setting {
		if c.f.isSet(flagName) {
			return setting{strings.TrimSpace(flagVal), "--" + flagName}
		}
		if ctx != nil && ctxVal != "" {
			return setting{ctxVal, fmt.Sprintf("context %q %s", ctx.name, ctxField)}
		}
		if v := getenv(env); v != "" {
			return setting{v, "$" + env}
		}
		return setting{}
	}
	urlFlag := "url"
	for _, name := range []string{"server", "s"} {
		if c.f.isSet(name) {
			urlFlag = name
		}
	}
	ctxURL := ""
	if ctx != nil {
		ctxURL = ctx.URL
	}
	u := pick(urlFlag, c.url, "url", ctxURL, "NATS_URL")
	if u.from == "" {
		u = setting{nats.DefaultURL, "the default URL"}
	}
	if err := checkURLs(u); err != nil {
		return r, err
	}
	r.urls = u.value

	cred, err := c.credentials(ctx)
	if err != nil {
		return r, err
	}
	if r.opts, err = cred.options(); err != nil {
		return r, err
	}

	var ctxCert, ctxKey, ctxCA string
	ctxTLSFirst := false
	if ctx != nil {
		ctxCert, ctxKey, ctxCA, ctxTLSFirst = ctx.Cert, ctx.Key, ctx.CA, ctx.TLSFirst
		if ctx.InboxPrefix != "" {
			r.opts = append(r.opts, nats.CustomInboxPrefix(ctx.InboxPrefix))
		}
	}
	cert := pick("tlscert", c.tlsCert, "cert", ctxCert, "NATS_CERT")
	key := pick("tlskey", c.tlsKey, "key", ctxKey, "NATS_KEY")
	ca := pick("tlsca", c.tlsCA, "ca", ctxCA, "NATS_CA")
	switch {
	case cert.value != "" && key.value == "":
		return r, fmt.Errorf("%s needs a TLS key (--tlskey)", cert.from)
	case key.value != "" && cert.value == "":
		return r, fmt.Errorf("%s needs a TLS certificate (--tlscert)", key.from)
	case cert.value != "":
		if _, err := tls.LoadX509KeyPair(cert.value, key.value); err != nil {
			return r, fmt.Errorf("%s %s / %s %s: not a usable certificate and key: %v", cert.from, cert.value, key.from, key.value, err)
		}
		r.opts = append(r.opts, nats.ClientCert(cert.value, key.value))
		r.clientCert = true
	}
	if ca.value != "" {
		data, err := readSmallFile(ca)
		if err != nil {
			return r, err
		}
		if !x509.NewCertPool().AppendCertsFromPEM(data) {
			return r, fmt.Errorf("%s %s: no PEM certificate in it", ca.from, ca.value)
		}
		r.opts = append(r.opts, nats.RootCAs(ca.value))
	}
	if c.tlsFirst || (!c.f.isSet("tlsfirst") && ctxTLSFirst) {
		r.opts = append(r.opts, nats.TLSHandshakeFirst())
	}
	return r, nil
}

// selectContext loads the context of --context, else $NATS_CONTEXT, else
// the one the nats CLI has selected; nil when there is none or
// --no-context is given.
func (c *connFlags) selectContext() (*natsContext, error) {
	if c.noContext {
		if c.f.isSet("context") {
			return nil, errors.New("--context and --no-context: give one")
		}
		return nil, nil
	}
	name, from := strings.TrimSpace(c.context), "--context"
	if c.f.isSet("context") && name == "" {
		return nil, errors.New("--context is blank")
	}
	if !c.f.isSet("context") {
		name, from = getenv("NATS_CONTEXT"), "$NATS_CONTEXT"
	}
	if name == "" {
		selected, err := selectedContextName()
		if err != nil {
			return nil, err
		}
		name, from = selected, "the selected nats context"
	}
	if name == "" {
		return nil, nil
	}
	ctx, err := loadContext(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	return ctx, nil
}

// credentials returns the credentials of the first source that gives any:
// the flags, the context, the environment.
func (c *connFlags) credentials(ctx *natsContext) (credentials, error) {
	var flags credentials
	for _, f := range []struct {
		name string
		val  string
		dst  *setting
	}{
		{"user", c.user, &flags.user}, {"password", c.password, &flags.password},
		{"token", c.token, &flags.token}, {"creds", c.creds, &flags.creds}, {"nkey", c.nkey, &flags.nkey},
	} {
		if c.f.isSet(f.name) {
			*f.dst = setting{f.val, "--" + f.name}
			if f.name != "password" {
				f.dst.value = strings.TrimSpace(f.val)
			}
			if f.dst.value == "" {
				return flags, fmt.Errorf("--%s is blank", f.name)
			}
		}
	}
	if flags.any() {
		return flags, flags.check()
	}
	if ctx != nil {
		from := func(field, v string) setting {
			if v == "" {
				return setting{}
			}
			return setting{v, fmt.Sprintf("context %q %s", ctx.name, field)}
		}
		cc := credentials{
			user: from("user", ctx.User), password: from("password", ctx.Password),
			token: from("token", ctx.Token), creds: from("creds", ctx.Creds), nkey: from("nkey", ctx.NKey),
			userJWT: from("user_jwt", ctx.UserJWT), userSeed: from("user_seed", ctx.UserSeed),
		}
		if cc.any() {
			return cc, cc.check()
		}
	}
	env := func(key string) setting {
		if v := getenv(key); v != "" {
			return setting{v, "$" + key}
		}
		return setting{}
	}
	ec := credentials{user: env("NATS_USER"), password: env("NATS_PASSWORD"), token: env("NATS_TOKEN"),
		creds: env("NATS_CREDS"), nkey: env("NATS_NKEY")}
	return ec, ec.check()
}

// check refuses contradictory credentials and unreadable files.
func (c *credentials) check() error {
	var methods []string
	for _, s := range []setting{c.user, c.token, c.creds, c.nkey, c.userJWT} {
		if s.value != "" {
			methods = append(methods, s.from)
		}
	}
	if len(methods) > 1 {
		return fmt.Errorf("%s: give one way to authenticate", strings.Join(methods, " and "))
	}
	if c.password.value != "" && c.user.value == "" {
		return fmt.Errorf("%s needs a user (--user)", c.password.from)
	}
	if c.creds.value != "" {
		data, err := readSmallFile(c.creds)
		if err != nil {
			return err
		}
		_, jwtErr := jwt.ParseDecoratedJWT(data)
		kp, seedErr := jwt.ParseDecoratedUserNKey(data)
		clear(data)
		if jwtErr != nil || seedErr != nil {
			return fmt.Errorf("%s %s: not a user credentials file (want a user JWT and its nkey seed)", c.creds.from, c.creds.value)
		}
		kp.Wipe()
	}
	if c.nkey.value != "" {
		data, err := readSmallFile(c.nkey)
		if err != nil {
			return err
		}
		kp, err := nkeys.ParseDecoratedNKey(data)
		clear(data)
		if err != nil {
			return fmt.Errorf("%s %s: not an nkey seed file", c.nkey.from, c.nkey.value)
		}
		pub, _ := kp.PublicKey()
		kp.Wipe()
		if !nkeys.IsValidPublicUserKey(pub) {
			return fmt.Errorf("%s %s: not a user nkey seed (it starts with SU)", c.nkey.from, c.nkey.value)
		}
	}
	if c.userSeed.value != "" {
		kp, err := nkeys.FromSeed([]byte(c.userSeed.value))
		if err != nil {
			return fmt.Errorf("%s: not an nkey seed", c.userSeed.from)
		}
		kp.Wipe()
	}
	return nil
}

// options turns checked credentials into nats options.
func (c *credentials) options() ([]nats.Option, error) {
	switch {
	case c.user.value != "" && c.password.value == "":
		return []nats.Option{nats.Token(c.user.value)}, nil // the nats CLI's reading
	case c.user.value != "":
		return []nats.Option{nats.UserInfo(c.user.value, c.password.value)}, nil
	case c.token.value != "":
		return []nats.Option{nats.Token(c.token.value)}, nil
	case c.creds.value != "":
		return []nats.Option{nats.UserCredentials(c.creds.value)}, nil
	case c.nkey.value != "":
		opt, err := nats.NkeyOptionFromSeed(c.nkey.value)
		if err != nil {
			return nil, fmt.Errorf("%s %s: not an nkey seed file", c.nkey.from, c.nkey.value)
		}
		return []nats.Option{opt}, nil
	case c.userJWT.value != "":
		return []nats.Option{nats.UserJWTAndSeed(c.userJWT.value, c.userSeed.value)}, nil
	}
	return nil, nil
}

// readSmallFile reads the file a setting names, refusing a missing,
// unreadable or oversized one. Its errors never quote the contents.
func readSmallFile(s setting) ([]byte, error) {
	f, err := os.Open(s.value)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", s.from, s.value, errors.Unwrap(err))
	}
	defer f.Close()
	st, err := f.Stat()
	switch {
	case err != nil:
		return nil, fmt.Errorf("%s %s: %w", s.from, s.value, err)
	case st.IsDir():
		return nil, fmt.Errorf("%s %s: is a directory", s.from, s.value)
	case st.Size() > maxKeyFile:
		return nil, fmt.Errorf("%s %s: larger than %d bytes", s.from, s.value, maxKeyFile)
	}
	data := make([]byte, st.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("%s %s: %w", s.from, s.value, err)
	}
	return data, nil
}

// checkURLs validates a comma-separated server list. Messages show the URLs
// redacted.
func checkURLs(s setting) error {
	if strings.TrimSpace(s.value) == "" {
		return fmt.Errorf("%s is blank", s.from)
	}
	for _, raw := range strings.Split(s.value, ",") {
		p := strings.TrimSpace(redact.URL(raw)) // parsed redacted: no secret in any error
		if p == "" {
			return fmt.Errorf("%s %s: an empty URL in the list", s.from, redact.URLs(s.value))
		}
		if !strings.Contains(p, "://") {
			p = "nats://" + p // nats.go's default scheme
		}
		u, err := url.Parse(p)
		if err != nil {
			return fmt.Errorf("%s %s: not a URL", s.from, redact.URLs(s.value))
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("%s %s: scheme %q, want nats://, tls://, ws:// or wss://", s.from, redact.URLs(s.value), u.Scheme)
		}
		if u.Hostname() == "" {
			return fmt.Errorf("%s %s: no host", s.from, redact.URLs(s.value))
		}
		if port := u.Port(); port != "" {
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("%s %s: port %q, want 1-65535", s.from, redact.URLs(s.value), port)
			}
		}
	}
	return nil
}
