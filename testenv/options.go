package testenv

import (
	"errors"
	"fmt"
	"strings"
)

// Option configures a server started by [Run] or [Start]: authentication,
// permissions, accounts, TLS. Without options the server accepts every
// client, as before. Options render a nats-server configuration, which the
// server parses afresh on every start, so a [Server.Restart] keeps them.
type Option func(*config) error

// Permissions are the subjects a user may publish and subscribe to. A nil
// list allows every subject; an empty, non-nil list allows none.
type Permissions struct {
	Publish   []string
	Subscribe []string
	// AllowResponses lets the user publish one reply to the reply subject of
	// each request it received, whatever Publish says.
	AllowResponses bool
}

// User is one user of a server. It logs in with Name and Password, or, when
// NKey is set (a public user nkey, "U..."), with the nkey's signature.
// Permissions nil means every subject.
type User struct {
	Name        string
	Password    string
	NKey        string
	Permissions *Permissions
}

// Account is a NATS account with its users: clients of different accounts
// share no subject.
type Account struct {
	Name  string
	Users []User
}

// config collects the options of one server.
type config struct {
	users    []User
	token    string
	accounts []Account
	tls      *TLS
	mutual   bool
	tlsFirst bool
	operator *Operator
	extra    []string
}

// WithUsers requires clients to log in as one of users (password or nkey).
func WithUsers(users ...User) Option {
	return func(c *config) error {
		if len(users) == 0 {
			return errors.New("testenv: WithUsers: no user")
		}
		for _, u := range users {
			if u.NKey == "" && u.Name == "" {
				return errors.New("testenv: WithUsers: a user needs a Name or an NKey")
			}
		}
		c.users = append(c.users, users...)
		return nil
	}
}

// WithToken requires clients to present token (nats.Token, or
// nats://<token>@host in the URL).
func WithToken(token string) Option {
	return func(c *config) error {
		if token == "" {
			return errors.New("testenv: WithToken: empty token")
		}
		c.token = token
		return nil
	}
}

// WithAccounts gives the server accounts, each with its users. Clients log
// in as one of those users; each account is a separate subject space.
func WithAccounts(accounts ...Account) Option {
	return func(c *config) error {
		if len(accounts) == 0 {
			return errors.New("testenv: WithAccounts: no account")
		}
		for _, a := range accounts {
			if a.Name == "" || len(a.Users) == 0 {
				return fmt.Errorf("testenv: WithAccounts: account %q needs a name and users", a.Name)
			}
		}
		c.accounts = append(c.accounts, accounts...)
		return nil
	}
}

// WithTLS makes the server accept TLS connections only, with the server
// certificate of certs (see [GenerateTLS]). [Server.URL] then starts with
// tls://; clients trust certs.CAFile (nats.RootCAs).
func WithTLS(certs *TLS) Option {
	return func(c *config) error {
		if certs == nil {
			return errors.New("testenv: WithTLS: nil certificates")
		}
		c.tls = certs
		return nil
	}
}

// WithMutualTLS is [WithTLS] that also requires every client to present a
// certificate signed by certs' CA (nats.ClientCert with certs.ClientCertFile
// and certs.ClientKeyFile).
func WithMutualTLS(certs *TLS) Option {
	return func(c *config) error {
		if err := WithTLS(certs)(c); err != nil {
			return err
		}
		c.mutual = true
		return nil
	}
}

// WithTLSFirst makes a TLS server expect the TLS handshake before the NATS
// INFO (nats.TLSHandshakeFirst on the client). It needs [WithTLS].
func WithTLSFirst() Option {
	return func(c *config) error {
		c.tlsFirst = true
		return nil
	}
}

// WithOperator runs the server in operator (JWT) mode, trusting op: clients
// log in with a user creds file (nats.UserCredentials(op.CredsFile)).
func WithOperator(op *Operator) Option {
	return func(c *config) error {
		if op == nil {
			return errors.New("testenv: WithOperator: nil operator")
		}
		c.operator = op
		return nil
	}
}

// WithConfig adds nats-server configuration text, for instance an
// authorization or accounts block (see the nats-server documentation).
// Listen addresses in it are overridden: the server always listens on a
// random loopback port.
func WithConfig(text string) Option {
	return func(c *config) error {
		c.extra = append(c.extra, text)
		return nil
	}
}

// render returns the nats-server configuration of c, "" when c is empty.
func (c *config) render() (string, error) {
	var b strings.Builder
	if len(c.users) > 0 || c.token != "" {
		b.WriteString("authorization {\n")
		if c.token != "" {
			fmt.Fprintf(&b, "  token: %s\n", quote(c.token))
		}
		if len(c.users) > 0 {
			writeUsers(&b, "  ", c.users)
		}
		b.WriteString("}\n")
	}
	if len(c.accounts) > 0 {
		b.WriteString("accounts {\n")
		for _, a := range c.accounts {
			fmt.Fprintf(&b, "  %s: {\n", quote(a.Name))
			writeUsers(&b, "    ", a.Users)
			b.WriteString("  }\n")
		}
		b.WriteString("}\n")
	}
	if c.tlsFirst && c.tls == nil {
		return "", errors.New("testenv: WithTLSFirst needs WithTLS")
	}
	if t := c.tls; t != nil {
		b.WriteString("tls {\n")
		fmt.Fprintf(&b, "  cert_file: %s\n  key_file: %s\n  ca_file: %s\n  timeout: 5\n",
			quote(t.ServerCertFile), quote(t.ServerKeyFile), quote(t.CAFile))
		if c.mutual {
			b.WriteString("  verify: true\n")
		}
		if c.tlsFirst {
			b.WriteString("  handshake_first: true\n")
		}
		b.WriteString("}\n")
	}
	if op := c.operator; op != nil {
		fmt.Fprintf(&b, "operator: %s\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: {\n", quote(op.JWT), quote(op.SystemAccount))
		fmt.Fprintf(&b, "  %s: %s\n  %s: %s\n}\n", op.SystemAccount, quote(op.systemJWT), op.Account, quote(op.AccountJWT))
	}
	for _, e := range c.extra {
		b.WriteString(e)
		b.WriteString("\n")
	}
	return b.String(), nil
}

// writeUsers writes a users list.
func writeUsers(b *strings.Builder, indent string, users []User) {
	b.WriteString(indent + "users: [\n")
	for _, u := range users {
		b.WriteString(indent + "  {")
		if u.NKey != "" {
			fmt.Fprintf(b, "nkey: %s", quote(u.NKey))
		} else {
			fmt.Fprintf(b, "user: %s, password: %s", quote(u.Name), quote(u.Password))
		}
		if p := u.Permissions; p != nil {
			fmt.Fprintf(b, ", permissions: {publish: %s, subscribe: %s", allowList(p.Publish), allowList(p.Subscribe))
			if p.AllowResponses {
				b.WriteString(", allow_responses: true")
			}
			b.WriteString("}")
		}
		b.WriteString("}\n")
	}
	b.WriteString(indent + "]\n")
}

// allowList renders subjects as a permission: nil allows all, empty none.
func allowList(subjects []string) string {
	switch {
	case subjects == nil:
		return `{allow: [">"]}`
	case len(subjects) == 0:
		return `{deny: [">"]}`
	}
	quoted := make([]string, len(subjects))
	for i, s := range subjects {
		quoted[i] = quote(s)
	}
	return "{allow: [" + strings.Join(quoted, ", ") + "]}"
}

// quote renders s as a double-quoted configuration string.
func quote(s string) string {
	return `"` + confEscaper.Replace(s) + `"`
}

// confEscaper escapes what a double-quoted nats-server configuration string
// cannot hold as is.
var confEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
